"""Units of the operating surface: DAG drawing, progress, config redaction, auth settings,
derived task fields, JSON log lines with ids, trace propagation, telemetry layering."""

from __future__ import annotations

import ast
import io
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tasker.api import views
from tasker.api.auth import Authenticator
from tasker.cli.dag import draw, levels
from tasker.cli.progress import bar
from tasker.config import ConfigError, load_config, redacted
from tasker.runtime import _JsonFormatter
from tasker.state.records import StepView, TaskView
from tasker.telemetry import logcontext, tracing

ROOT = Path(__file__).resolve().parents[2]
DIAMOND = [
    ("start", []),
    ("b", ["start"]),
    ("c", ["start"]),
    ("end", ["b", "c"]),
]


def test_the_dag_is_drawn_by_level_with_each_steps_state_and_parents() -> None:
    drawn = draw(
        [(name, deps, "complete" if name != "end" else "pending") for name, deps in DIAMOND]
    )

    lines = drawn.splitlines()
    assert levels(DIAMOND) == {"start": 1, "b": 2, "c": 2, "end": 3}
    assert lines[0].split() == ["[1]", "[x]", "start", "complete"]
    assert lines[3].split() == ["[3]", "[", "]", "end", "pending", "<-", "b,", "c"]


def test_the_progress_bar_fills_with_steps_done() -> None:
    assert bar(2, 4, width=8) == "####...."
    assert bar(0, 0, width=4) == "####"


def test_config_show_masks_secrets_and_url_passwords() -> None:
    config = load_config(
        environ={
            "TASKER_API_KEYS": "k1=tasks:read,k2=*",
            "TASKER_JWT_SECRET": "s3cret",
            "TASKER_DATABASE_URL": "postgresql://app:pw@db/tasker",
        }
    )

    shown = json.dumps(redacted(config))

    assert "k1" not in shown and "s3cret" not in shown and ":pw@" not in shown
    assert "***=tasks:read" in shown and "postgresql://app:***@db/tasker" in shown


def test_an_api_bind_without_a_port_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="api_bind"):
        load_config(environ={"TASKER_API_BIND": "localhost"})


@pytest.mark.parametrize(
    ("keys", "problem"),
    [(["k=tasks:fly"], "unknown permissions"), (["no-permissions"], "KEY=perm")],
)
def test_bad_api_keys_are_refused_at_start(keys: list[str], problem: str) -> None:
    config = load_config(overrides={"auth_enabled": True, "api_keys": keys}, environ={})

    with pytest.raises(ConfigError, match=problem):
        Authenticator(config)


def test_auth_on_without_keys_or_jwt_settings_is_refused() -> None:
    with pytest.raises(ConfigError, match="auth_enabled"):
        Authenticator(load_config(overrides={"auth_enabled": True}, environ={}))


def _step(name: str, state: str, deps: list[str]) -> StepView:
    now = datetime.now(UTC)
    return StepView(uuid4(), uuid4(), name, state, 0, 3, True, None, None, deps, now, now,
                    None, None, None, None)  # fmt: skip


def _task(status: str, steps: list[StepView], done: int) -> TaskView:
    now = datetime.now(UTC)
    return TaskView(uuid4(), "ns", "t", "1.0.0", status, {}, None, None, None, 0, [], None,
                    len(steps), len(steps) - done, 0, done, 0, now, now, None, steps)  # fmt: skip


def test_a_task_with_a_ready_step_reports_it() -> None:
    steps = [_step("start", "complete", []), _step("next", "pending", ["start"])]

    task = views.task(_task("steps_in_process", steps, done=1))

    assert (task.ready_steps, task.execution_status, task.recommended_action) == (
        1, "has_ready_steps", "execute_ready_steps",
    )  # fmt: skip
    assert task.steps[1].dependencies_satisfied and task.completion_percentage == 50.0


def test_json_log_lines_carry_the_bound_ids_and_the_trace() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_JsonFormatter("worker"))
    logger = logging.getLogger("tests.json_logs")
    logger.addHandler(handler)
    logcontext.install()
    provider = TracerProvider()
    task_uuid = uuid4()
    try:
        with (
            logcontext.bound(task_uuid=task_uuid, correlation_id="order-7", step_uuid=None),
            provider.get_tracer("t").start_as_current_span("s"),
        ):
            logger.warning("about a task")
        logger.warning("about nothing")
    finally:
        logger.removeHandler(handler)

    about_task, about_nothing = (json.loads(line) for line in stream.getvalue().splitlines())
    assert about_task["task_uuid"] == str(task_uuid) and about_task["correlation_id"] == "order-7"
    assert len(about_task["trace_id"]) == 32 and "step_uuid" not in about_task
    assert "task_uuid" not in about_nothing


def test_a_carrier_continues_the_trace_on_the_other_side() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("api") as api:
        carrier = tracing.inject()

    assert carrier["traceparent"].split("-")[1] == format(api.get_span_context().trace_id, "032x")
    assert tracing.inject() == {}  # no span, nothing to carry


TASK = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
SAME_TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"}
OTHER_TRACE = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}


@pytest.mark.parametrize(
    ("live", "stored", "continued"),
    [
        (SAME_TRACE, TASK, SAME_TRACE),  # the live chain, when it is the task's trace
        (None, TASK, TASK),  # a timer or a sweep: the task's stored trace
        ({}, TASK, TASK),
        (OTHER_TRACE, TASK, TASK),  # another task's work batched with this one's
        (OTHER_TRACE, None, OTHER_TRACE),  # a task that stored no trace
        (None, None, None),
    ],
)
def test_work_on_a_task_continues_the_tasks_trace(
    live: dict[str, str] | None, stored: dict[str, str] | None, continued: object
) -> None:
    assert tracing.within_task(live, stored) == continued


@pytest.mark.parametrize("folder", ["tasker/telemetry"])
def test_telemetry_depends_on_no_pipeline_layer(folder: str) -> None:
    forbidden = ("tasker.state", "tasker.actors", "tasker.handlers", "tasker.api")
    offending = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith(forbidden):
                offending.append(f"{path.name} imports {module}")
    assert not offending
