"""Decision and batch handlers written for Tasker (importing `tasker_core`) run unchanged in
our worker under `compat = ["tasker-core"]`, and produce the outcomes our engine reads."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasker.handlers.compat import disable_tasker_core_compat
from tasker.messaging.messages import HandlerSpec
from tests.unit.test_compat_tasker_core import run_steps, step

TASKER_STYLE_DYNAMIC_HANDLERS = """
from tasker_core import DecisionHandler, StepContext, StepHandler
from tasker_core.batch_processing import Batchable
from tasker_core.step_handler.functional import (
    BatchConfig, Decision, batch_analyzer, batch_worker, decision_handler, depends_on,
)


class RoutingDecisionHandler(DecisionHandler):
    handler_name = "routing_decision"

    def call(self, context: StepContext):
        if context.get_input("amount") < 1000:
            return self.decision_success(["auto_approve"], routing_context={"tier": "small"})
        return self.decision_no_branches(reason="too big to auto-route")


@decision_handler("route_order")
@depends_on(order="validate_order")
def route_order(order, _context):
    if order and order.get("tier") == "premium":
        return Decision.route(["process_premium"], tier="premium")
    return Decision.skip("standard orders need nothing more")


class CsvAnalyzer(StepHandler, Batchable):
    handler_name = "analyze_csv"

    def call(self, context):
        configs = self.create_cursor_ranges(250, 100)
        return self.batch_analyzer_success(
            cursor_configs=configs, total_items=250, worker_template_name="process_batch"
        )


@batch_analyzer("analyze_functional", worker_template="process_batch")
def analyze_functional(_context):
    return BatchConfig(total_items=250, batch_size=100)


class ProcessBatch(StepHandler, Batchable):
    handler_name = "process_batch"

    def call(self, context):
        no_op = self.handle_no_op_worker(context)
        if no_op:
            return no_op
        batch = self.get_batch_context(context)
        if not context.has_checkpoint():
            self.checkpoint_yield(
                cursor=batch.start_cursor + 50, items_processed=50,
                accumulated_results={"sum": 50},
            )
        total = context.accumulated_results["sum"] + batch.end_cursor - context.checkpoint_cursor
        return self.batch_worker_success(items_processed=total, last_cursor=batch.end_cursor)


@batch_worker("process_functional")
def process_functional(batch_context, _context):
    return {"start": batch_context.start_cursor, "end": batch_context.end_cursor,
            "batch_id": batch_context.batch_id}
"""

CURSOR_INPUTS = {
    "cursor": {"batch_id": "002", "start_cursor": 100, "end_cursor": 200, "batch_size": 100},
    "batch_metadata": {"failure_strategy": "fail_fast"},
    "is_no_op": False,
}


@pytest.fixture(autouse=True)
def clean_compat() -> Iterator[None]:
    disable_tasker_core_compat()
    yield
    disable_tasker_core_compat()


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"tasker_style_dynamic_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(TASKER_STYLE_DYNAMIC_HANDLERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_decision_handler_class_routes_and_skips(module: str) -> None:
    small, big = run_steps(
        module,
        step("routing_decision", input_data={"amount": 10}, step_uuid=uuid.UUID(int=1)),
        step("routing_decision", input_data={"amount": 10_000}, step_uuid=uuid.UUID(int=2)),
    )
    assert small.result == {
        "decision_point_outcome": {"type": "create_steps", "step_names": ["auto_approve"]},
        "routing_context": {"tier": "small"},
    }
    assert big.result["decision_point_outcome"] == {"type": "no_branches", "step_names": []}
    assert big.result["reason"] == "too big to auto-route"


def test_a_decision_function_gets_its_dependencies_and_returns_decision_route(
    module: str,
) -> None:
    premium = {"validate_order": {"result": {"tier": "premium"}}}
    [result] = run_steps(module, step("route_order", dependency_results=premium))

    assert result.result["decision_point_outcome"]["step_names"] == ["process_premium"]
    assert result.result["routing_context"] == {"tier": "premium"}
    assert result.metadata["decision_handler"] == "route_order"


@pytest.mark.parametrize("handler", ["analyze_csv", "analyze_functional"])
def test_batch_analyzers_return_cursor_ranges(module: str, handler: str) -> None:
    [result] = run_steps(module, step(handler))

    outcome = result.result["batch_processing_outcome"]
    assert outcome["type"] == "create_batches"
    assert outcome["worker_template_name"] == "process_batch"
    assert [(c["start_cursor"], c["end_cursor"]) for c in outcome["cursor_configs"]] == [
        (0, 100),
        (100, 200),
        (200, 250),
    ]
    assert result.result["worker_count"] == 3 and result.result["total_items"] == 250


def test_a_batch_worker_yields_a_checkpoint_then_resumes_from_it(module: str) -> None:
    [first] = run_steps(module, step("process_batch", step_inputs=CURSOR_INPUTS))
    assert first.status == "failure"
    assert first.metadata["checkpoint_yield"] == {
        "cursor": 150,
        "items_processed": 50,
        "accumulated_results": {"sum": 50},
    }

    checkpoint = {"cursor": 150, "items_processed": 50, "accumulated_results": {"sum": 50}}
    resumed = step("process_batch", step_inputs=CURSOR_INPUTS, checkpoint=checkpoint)
    [second] = run_steps(module, resumed)
    assert second.status == "success"
    assert second.result["items_processed"] == 100
    assert second.result["last_cursor"] == 200


def test_the_no_op_worker_returns_without_processing(module: str) -> None:
    no_op = {**CURSOR_INPUTS, "is_no_op": True}
    [result] = run_steps(module, step("process_batch", step_inputs=no_op))

    assert result.status == "success"
    assert result.result["no_op"] is True and result.result["processed_count"] == 0


def test_a_batch_worker_function_receives_its_batch_context(module: str) -> None:
    [result] = run_steps(module, step("process_functional", step_inputs=CURSOR_INPUTS))

    assert result.result == {"start": 100, "end": 200, "batch_id": "002"}


def test_handler_spec_is_unchanged_by_inputs() -> None:
    message = step("process_batch", step_inputs=CURSOR_INPUTS)
    assert message.handler == HandlerSpec("process_batch")
