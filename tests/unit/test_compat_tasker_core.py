"""The opt-in `tasker_core` compatibility layer: Tasker-style handler modules run unchanged."""

from __future__ import annotations

import importlib
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tasker.handlers
from tasker.config import Config, ConfigError, load_config
from tasker.handlers.compat import (
    CompatError,
    disable_tasker_core_compat,
    enable_tasker_core_compat,
    is_tasker_core_compat_enabled,
)
from tasker.handlers.worker import Worker
from tasker.messaging.memory import InMemoryBroker
from tasker.messaging.messages import (
    ORCHESTRATION_RESULTS_QUEUE,
    HandlerSpec,
    StepMessage,
    StepResultMessage,
    decode,
    encode,
    worker_queue,
)

# Written the way Tasker's own example handlers are: only the imports name tasker_core.
TASKER_STYLE_HANDLERS = """
from tasker_core import ErrorType, StepContext, StepHandler, StepHandlerResult
from tasker_core.errors import PermanentError, RetryableError, TimeoutError, ValidationError
from tasker_core.step_handler import StepHandler as BaseStepHandler
from tasker_core.step_handler.functional import depends_on, inputs, step_handler
from tasker_core.types import StepHandlerResult as TypesStepHandlerResult


class LinearStep1Handler(StepHandler):
    handler_name = "linear_step_1"
    handler_version = "1.0.0"

    def call(self, context: StepContext) -> StepHandlerResult:
        even_number = context.get_input("even_number")
        if even_number is None or even_number % 2:
            return StepHandlerResult.failure(
                message="even_number must be even",
                error_type=ErrorType.VALIDATION_ERROR,
                retryable=False,
            )
        return self.success(result={"squared": even_number ** 2})


class LinearStep2Handler(BaseStepHandler):
    handler_name = "linear_step_2"

    def call(self, context):
        squared = context.get_dependency_field("linear_step_1", "squared")
        factor = context.step_config.get("factor", 1)
        return TypesStepHandlerResult.success({"total": squared * factor,
                                               "retry": context.retry_count})


@step_handler("linear_step_3", version="1.0.0")
@depends_on(step2="linear_step_2")
@inputs("even_number")
def linear_step_3(step2, even_number, context):
    if step2 is None:
        raise PermanentError("linear_step_2 result missing")
    return {"final": step2["total"] + even_number}


class FlakyHandler(StepHandler):
    handler_name = "flaky"

    def call(self, context):
        if not context.is_last_retry():
            raise TimeoutError("upstream timed out", retry_after=2)
        raise ValidationError("gave up")
"""

NS = "compat"


@pytest.fixture(autouse=True)
def clean_compat() -> Iterator[None]:
    disable_tasker_core_compat()
    yield
    disable_tasker_core_compat()


@pytest.fixture
def handler_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"tasker_style_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(TASKER_STYLE_HANDLERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def step(handler_name: str, **fields: Any) -> StepMessage:
    values: dict[str, Any] = {
        "task_uuid": uuid.uuid4(),
        "step_uuid": uuid.uuid4(),
        "namespace": NS,
        "task_name": "linear",
        "task_version": "1.0.0",
        "step_name": handler_name,
        "handler": HandlerSpec(handler_name),
        "attempt": 1,
        "max_attempts": 3,
        "retryable": True,
        "input_data": {"even_number": 6},
    }
    values.update(fields)
    return StepMessage(**values)


def run_steps(handler_module: str, *messages: StepMessage) -> list[StepResultMessage]:
    """Run `messages` through a worker started with `compat = ["tasker-core"]`."""
    broker = InMemoryBroker()
    broker.ensure_queue(worker_queue(NS))
    broker.ensure_queue(ORCHESTRATION_RESULTS_QUEUE)
    config = Config(
        broker="memory",
        namespaces=(NS,),
        handlers=(handler_module,),
        compat=("tasker-core",),
        poll_interval_seconds=0.05,
    )
    worker = Worker(config, broker)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        broker.send_batch(worker_queue(NS), [encode(message) for message in messages])
        return receive_results(broker, len(messages))
    finally:
        worker.stop()
        thread.join(10)


def receive_results(broker: InMemoryBroker, expected: int) -> list[StepResultMessage]:
    results: list[StepResultMessage] = []
    deadline = time.monotonic() + 10
    while len(results) < expected and time.monotonic() < deadline:
        for delivery in broker.receive(ORCHESTRATION_RESULTS_QUEUE, max_messages=10, wait=0.1):
            result = decode(delivery.body)
            assert isinstance(result, StepResultMessage)
            results.append(result)
    return sorted(results, key=lambda r: str(r.step_uuid))


def test_tasker_core_is_not_importable_before_enabling(handler_module: str) -> None:
    with pytest.raises(ModuleNotFoundError, match="tasker_core"):
        importlib.import_module("tasker_core")
    with pytest.raises(ModuleNotFoundError, match="tasker_core"):
        importlib.import_module(handler_module)


def test_a_tasker_style_module_imports_after_enabling_and_shares_our_classes(
    handler_module: str,
) -> None:
    enable_tasker_core_compat()
    enable_tasker_core_compat()  # idempotent
    module = importlib.import_module(handler_module)
    import tasker_core  # type: ignore[import-not-found]
    import tasker_core.errors  # type: ignore[import-not-found]

    assert tasker_core.StepHandler is tasker.handlers.StepHandler
    assert tasker_core.StepHandlerResult is tasker.handlers.StepHandlerResult
    assert tasker_core.errors.TimeoutError is tasker.handlers.errors.StepTimeoutError
    assert issubclass(module.LinearStep1Handler, tasker.handlers.StepHandler)


def test_tasker_style_handlers_run_unchanged_in_the_worker(handler_module: str) -> None:
    first = step("linear_step_1")
    [result1] = run_steps(handler_module, first)
    assert result1.result == {"squared": 36}

    parents = {"linear_step_1": {"result": result1.result}}
    second = step(
        "linear_step_2",
        dependency_results=parents,
        handler=HandlerSpec("linear_step_2", initialization={"factor": 2}),
        attempt=2,
    )
    [result2] = run_steps(handler_module, second)
    assert result2.result == {"total": 72, "retry": 1}

    parents["linear_step_2"] = {"result": result2.result}
    [result3] = run_steps(handler_module, step("linear_step_3", dependency_results=parents))
    assert result3.result == {"final": 78}


def test_tasker_style_failures_keep_their_classification(handler_module: str) -> None:
    odd = step("linear_step_1", input_data={"even_number": 3})
    retrying = step("flaky", attempt=1)
    last = step("flaky", attempt=3)
    results = {r.step_uuid: r for r in run_steps(handler_module, odd, retrying, last)}
    assert (results[odd.step_uuid].error or fail()).error_type == "validation_error"
    timeout = results[retrying.step_uuid].error or fail()
    assert (timeout.error_type, timeout.retryable, timeout.retry_after_seconds) == (
        "timeout",
        True,
        2,
    )
    gave_up = results[last.step_uuid].error or fail()
    assert (gave_up.retryable, gave_up.message) == (False, "gave up")


def fail() -> Any:
    raise AssertionError("expected a failure result")


def test_refuses_to_shadow_a_real_tasker_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "tasker_core"
    package.mkdir()
    (package / "__init__.py").write_text("REAL = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(CompatError, match="real tasker_core is installed"):
        enable_tasker_core_compat()
    assert not is_tasker_core_compat_enabled()
    sys.modules.pop("tasker_core", None)


def test_compat_setting_from_the_environment_and_unknown_values() -> None:
    config = load_config(environ={"TASKER_COMPAT": "tasker-core"})
    assert config.compat == ("tasker-core",)
    with pytest.raises(ConfigError, match="compat"):
        Worker(Config(compat=("celery",)), InMemoryBroker())


def test_the_shim_modules_list_what_they_export() -> None:
    shim = importlib.import_module("tasker.handlers.compat_tasker_core.step_handler.functional")
    assert sorted(shim.__all__) == [
        "BatchConfig",
        "Decision",
        "batch_analyzer",
        "batch_worker",
        "decision_handler",
        "depends_on",
        "inputs",
        "step_handler",
    ]
    assert textwrap.dedent(shim.__doc__ or "").startswith("`tasker_core.step_handler")
