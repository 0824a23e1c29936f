"""Observability end to end: one trace from the API call to finalization, Prometheus
metrics that move with the work, and log lines that carry the task's ids."""

from __future__ import annotations

import logging
import time

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from tasker.client import TaskerClient

pytestmark = pytest.mark.postgres

PIPELINE = [
    "POST /v1/tasks",
    "tasker.task.initialize",
    "tasker.steps.enqueue",
    "tasker.step.execute",
    "tasker.step.result",
    "tasker.task.finalize",
]


def _spans_of_trace(spans: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    """The finished spans of one trace, once its finalization span has ended."""
    deadline = time.monotonic() + 10
    while True:
        found = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
        if any(s.name == "tasker.task.finalize" for s in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_one_trace_spans_the_api_call_the_worker_and_finalization(
    client: TaskerClient, spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("caller") as caller:
        task_uuid = client.create_task("examples", "linear_workflow", "1.0.0", {"even_number": 2})
    client.wait(task_uuid, timeout=60)

    found = _spans_of_trace(spans, caller.get_span_context().trace_id)

    names = [span.name for span in found]
    assert all(name in names for name in PIPELINE), names
    assert names.count("tasker.step.execute") == 4 and names.count("tasker.step.result") == 4
    worker = next(s for s in found if s.name == "tasker.step.execute")
    assert worker.attributes is not None
    assert worker.attributes["tasker.task_uuid"] == str(task_uuid)


def _scrape(client: TaskerClient) -> dict[str, float]:
    """Every sample, summed over its labels."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(client.metrics()):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def test_metrics_move_with_a_workflow(client: TaskerClient) -> None:
    before = _scrape(client)

    client.wait(client.create_task("examples", "diamond_workflow", "1.0.0", {"even_number": 2}))
    after = _scrape(client)

    def moved(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert moved("tasker_tasks_created_total") == 1
    assert moved("tasker_tasks_completed_total") == 1
    assert moved("tasker_steps_enqueued_total") == 4
    assert moved("tasker_steps_completed_total") == 4
    assert moved("tasker_steps_execution_duration_seconds_count") == 4
    assert moved("tasker_tasks_initialization_duration_seconds_count") == 1
    assert after["tasker_queue_depth"] >= 0


def test_log_lines_about_a_task_carry_its_ids(
    client: TaskerClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tasker")
    task_uuid = client.create_task(
        "examples", "linear_workflow", "1.0.0", {"even_number": 2}, correlation_id="order-7"
    )
    client.wait(task_uuid, timeout=60)
    time.sleep(0.2)  # the finalizer logs right after its commit

    finished = [r for r in caplog.records if "finished" in r.getMessage()]
    contexts = [getattr(r, "tasker_context", {}) for r in finished]
    assert any(c.get("task_uuid") == str(task_uuid) and "trace_id" in c for c in contexts)
