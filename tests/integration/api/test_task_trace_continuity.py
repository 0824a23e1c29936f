"""A task keeps one trace for its whole life: work that starts with no live trace context
(a retry woken by the timer, an operator's action hours later) continues the trace the task
was created in, which the task stores."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tasker.api.schemas import StepAction
from tasker.client import TaskerClient

pytestmark = pytest.mark.postgres

tracer = trace.get_tracer("tests")
Names = list[str]


def _task_spans(
    spans: InMemorySpanExporter, task_uuid: UUID, done: Callable[[Names], bool]
) -> list[ReadableSpan]:
    """The finished spans about one task, once `done` holds for their names (or 10s)."""
    deadline = time.monotonic() + 10
    while True:
        found = [
            s
            for s in spans.get_finished_spans()
            if (s.attributes or {}).get("tasker.task_uuid") == str(task_uuid)
        ]
        if done([s.name for s in found]) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _executions(found: list[ReadableSpan], step: str) -> list[Any]:
    return [
        (s.attributes or {}).get("tasker.attempt")
        for s in found
        if s.name == "tasker.step.execute" and (s.attributes or {}).get("tasker.step_name") == step
    ]


def test_a_retry_woken_by_the_timer_continues_the_tasks_trace(
    client: TaskerClient, spans: InMemorySpanExporter
) -> None:
    # Given a task whose first step fails once, created in the caller's trace
    with tracer.start_as_current_span("caller") as caller:
        task_uuid = client.create_task("failures", "flaky_workflow", "1.0.0", {"fail_times": 1})

    # When the retry timer re-enqueues the step and the task completes
    assert client.wait(task_uuid, timeout=60).status == "complete"
    found = _task_spans(spans, task_uuid, lambda names: "tasker.task.finalize" in names)

    # Then every span about the task, the retry's included, is in the caller's trace
    assert _executions(found, "flaky") == ["1", "2"]
    assert _executions(found, "after_flaky") == ["1"]
    assert {s.context.trace_id for s in found} == {caller.get_span_context().trace_id}


@pytest.mark.parametrize("action", ["reset_for_retry", "complete_manually"])
def test_an_operator_action_and_what_it_sets_off_join_the_tasks_trace(
    client: TaskerClient, spans: InMemorySpanExporter, tmp_path: Path, action: StepAction
) -> None:
    # Given a task that failed at its gate, created in the caller's trace
    gate_file = tmp_path / "open"
    with tracer.start_as_current_span("caller") as caller:
        task_uuid = client.create_task(
            "failures", "gated_workflow", "1.0.0", {"gate_file": str(gate_file)}
        )
    failed = client.wait(task_uuid, timeout=60)
    assert failed.status == "error"
    gate = next(step for step in failed.steps if step.name == "gate")

    # When an operator, in a trace of their own, fixes the gate step
    gate_file.touch()
    with tracer.start_as_current_span("operator") as operator:
        client.step_action(
            task_uuid, gate.step_uuid, action, reason="fixed", completion_data={"result": 21}
        )
    assert client.wait(task_uuid, timeout=60).status == "complete"
    found = _task_spans(spans, task_uuid, lambda names: names.count("tasker.task.finalize") == 2)

    # Then the action's span and all the work after it are in the task's original trace,
    # and the action's span links to the operator's trace
    assert {s.context.trace_id for s in found} == {caller.get_span_context().trace_id}
    [patch] = [s for s in found if s.name.startswith("PATCH ")]
    assert [link.context.trace_id for link in patch.links] == [operator.get_span_context().trace_id]
    assert _executions(found, "doubled") == ["1"]
    enqueued_by_patch = [
        s for s in found if s.parent is not None and s.parent.span_id == patch.context.span_id
    ]
    assert [s.name for s in enqueued_by_patch] == ["tasker.steps.enqueue"]
