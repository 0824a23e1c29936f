"""Which template steps exist when (the pure plan), and how outcomes are checked."""

from __future__ import annotations

import time
import uuid

import pytest

from tasker.state.dynamic_creation import CreationPlan, TaskSteps
from tasker.state.dynamic_outcomes import OutcomeError, batch_outcome, decision_outcome
from tasker.state.dynamic_plan import graph_of, plan_steps
from tasker.state.dynamic_rows import RetryFill
from tasker.state.templates import (
    HandlerDefinition,
    StepDefinition,
    TaskTemplate,
    load_template_text,
)

TEMPLATE = """
name: shapes
namespace_name: tests
version: 1.0.0
steps:
  - {name: start, handler: {callable: x}}
  - {name: route, type: decision, dependencies: [start], handler: {callable: x}}
  - {name: small, dependencies: [route], handler: {callable: x}}
  - {name: large, dependencies: [route], handler: {callable: x}}
  - {name: after_large, dependencies: [large], handler: {callable: x}}
  - {name: join, type: deferred_convergence, dependencies: [small, after_large],
     handler: {callable: x}}
  - name: analyze
    type: batchable
    dependencies: [start]
    handler: {callable: x}
    batch_config: {worker_template: work, parallelism: 2}
  - {name: work, type: batch_worker, dependencies: [analyze], handler: {callable: x},
     batch_config: {parallelism: 2}}
  - {name: total, type: deferred_convergence, dependencies: [work], handler: {callable: x}}
"""
FILL = RetryFill(3, "exponential", 1000, 30000)


@pytest.fixture(scope="module")
def template() -> TaskTemplate:
    return load_template_text(TEMPLATE)


def plan(
    template: TaskTemplate,
    existing: set[str],
    decided: dict[str, set[str]] | None = None,
    batched: set[str] | None = None,
) -> list[str]:
    return plan_steps(graph_of(template), existing, decided or {}, batched or set())


def test_a_task_starts_with_everything_no_outcome_gates(template: TaskTemplate) -> None:
    assert plan(template, set()) == ["start", "route", "analyze"]


def test_a_decision_creates_its_choice_and_what_follows_it(template: TaskTemplate) -> None:
    created = plan(template, {"start", "route", "analyze"}, {"route": {"large"}})

    assert created == ["large", "after_large", "join"]


def test_a_convergence_waits_until_every_dependency_is_determined(
    template: TaskTemplate,
) -> None:
    assert "join" not in plan(template, {"start", "route"})
    assert plan(template, {"start", "route", "analyze"}, {"route": set()}) == []


def test_batch_workers_wait_for_their_batchable_outcome(template: TaskTemplate) -> None:
    existing = {"start", "route", "analyze"}
    assert "work" not in plan(template, existing)
    assert plan(template, existing, batched={"analyze"}) == ["work", "total"]


def test_a_batch_outcome_becomes_numbered_instances_with_cursors(
    template: TaskTemplate,
) -> None:
    result = {
        "batch_processing_outcome": {
            "type": "create_batches",
            "worker_template_name": "work",
            "cursor_configs": [{"start_cursor": 0, "end_cursor": 10}] * 3,
        }
    }
    outcome = batch_outcome(template, "analyze", result)
    existing = {name: [uuid.uuid4()] for name in ("start", "route", "analyze")}
    task = TaskSteps(uuids=existing, batch_results={"analyze": result})

    built = CreationPlan.build(template, task, FILL, {"analyze": outcome})

    names = [row["name"] for row in built.steps]
    assert names == ["work_001", "work_002", "work_003", "total"]
    assert built.steps[2]["inputs"]["cursor"]["batch_id"] == "003"
    assert len(built.edges) == 3 + 3  # analyze -> each worker, each worker -> total
    assert built.batches[0]["parallelism"] == 2


def test_tasker_s_default_worker_name_is_accepted(template: TaskTemplate) -> None:
    result = {
        "batch_processing_outcome": {
            "type": "create_batches",
            "worker_template_name": "batch_worker",
            "cursor_configs": [{"start_cursor": 0, "end_cursor": 1}],
        }
    }
    assert batch_outcome(template, "analyze", result).worker == "work"


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ({}, "must return 'decision_point_outcome'"),
        ({"decision_point_outcome": {"type": "maybe"}}, "unknown outcome type 'maybe'"),
        (
            {"decision_point_outcome": {"type": "create_steps", "step_names": ["join"]}},
            "may create only its declared children: small, large",
        ),
    ],
)
def test_bad_decision_outcomes_say_what_to_fix(
    template: TaskTemplate, result: dict[str, object], message: str
) -> None:
    with pytest.raises(OutcomeError, match=message):
        decision_outcome(template, "route", result)


def test_a_worker_name_other_than_the_configured_one_is_refused(template: TaskTemplate) -> None:
    result = {"batch_processing_outcome": {"type": "no_batches", "worker_template_name": "x"}}
    with pytest.raises(OutcomeError, match="worker_template is 'work'"):
        batch_outcome(template, "analyze", result)


def test_planning_a_5000_step_fan_out_fan_in_is_linear() -> None:
    handler = HandlerDefinition("x")
    leaves = tuple(f"l{i}" for i in range(5000))
    steps = (
        StepDefinition("root", handler),
        *(StepDefinition(leaf, handler, dependencies=("root",)) for leaf in leaves),
        StepDefinition("sink", handler, dependencies=leaves),
    )
    wide = TaskTemplate("wide", "t", "1.0.0", steps)

    started = time.perf_counter()
    built = CreationPlan.build(wide, TaskSteps(), FILL)

    assert len(built.steps) == 5002 and len(built.edges) == 10_000
    assert time.perf_counter() - started < 2.0  # quadratic would take minutes
