"""Handler resolution: registry key, import paths (both forms), `method`, unknown callables."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tasker.handlers import StepContext, StepHandler
from tasker.handlers.execution import execute_step
from tasker.handlers.registry import (
    HandlerLoadError,
    HandlerNotFoundError,
    HandlerRegistry,
    load_handler_modules,
)
from tasker.messaging.messages import HandlerSpec, StepMessage

HANDLERS_SOURCE = """
from tasker.handlers import StepHandler, step_handler, inputs

class Greeter(StepHandler):
    handler_name = "greet"

    def call(self, context):
        return self.success({"hello": context.get_input("name")})

    def shout(self, context):
        return self.success({"hello": context.get_input("name").upper()})

class LoudGreeter(Greeter):
    pass  # inherits handler_name: must not collide with Greeter

class Unnamed(StepHandler):
    def call(self, context):
        return {"unnamed": True}

@step_handler("farewell")
@inputs("name")
def farewell(name):
    return {"bye": name}

def plain(context):
    return {"plain": context.get_input("name")}
"""


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """Write a uniquely named module under a temp dir on sys.path; returns its name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created: list[str] = []

    def make(source: str, prefix: str = "handlers_mod") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        created.append(name)
        return name

    yield make
    for name in created:
        sys.modules.pop(name, None)


def message_for(callable_name: str, method: str = "call") -> StepMessage:
    return StepMessage(
        task_uuid=uuid.uuid4(),
        step_uuid=uuid.uuid4(),
        namespace="ns",
        task_name="t",
        task_version="1",
        step_name="s",
        handler=HandlerSpec(callable_name, method=method),
        attempt=1,
        max_attempts=3,
        retryable=True,
        input_data={"name": "ada"},
    )


def run(registry: HandlerRegistry, callable_name: str, method: str = "call") -> Any:
    return execute_step(registry, message_for(callable_name, method))


def test_load_handler_modules_registers_named_classes_and_decorated_functions(
    make_module: Callable[..., str],
) -> None:
    module = make_module(HANDLERS_SOURCE)
    registry = load_handler_modules([module])
    assert registry.keys() == ["farewell", "greet"]
    assert registry.modules == [module]
    assert "greet" in registry


def test_resolves_by_registry_key(make_module: Callable[..., str]) -> None:
    registry = load_handler_modules([make_module(HANDLERS_SOURCE)])
    assert run(registry, "greet").result == {"hello": "ada"}
    assert run(registry, "farewell").result == {"bye": "ada"}


def test_resolves_by_dotted_class_path(make_module: Callable[..., str]) -> None:
    module = make_module(HANDLERS_SOURCE)
    registry = HandlerRegistry()  # nothing loaded: the path alone finds it
    assert run(registry, f"{module}.Greeter").result == {"hello": "ada"}
    assert run(registry, f"{module}.Unnamed").result == {"unnamed": True}


def test_resolves_by_colon_function_path(make_module: Callable[..., str]) -> None:
    module = make_module(HANDLERS_SOURCE)
    registry = HandlerRegistry()
    assert run(registry, f"{module}:plain").result == {"plain": "ada"}
    assert run(registry, f"{module}:farewell").result == {"bye": "ada"}
    assert run(registry, f"{module}:Greeter").result == {"hello": "ada"}


def test_method_selects_another_method(make_module: Callable[..., str]) -> None:
    module = make_module(HANDLERS_SOURCE)
    registry = load_handler_modules([module])
    assert run(registry, "greet", method="shout").result == {"hello": "ADA"}
    assert run(registry, f"{module}.Greeter", method="shout").result == {"hello": "ADA"}


def test_missing_method_is_a_permanent_failure(make_module: Callable[..., str]) -> None:
    registry = load_handler_modules([make_module(HANDLERS_SOURCE)])
    result = run(registry, "greet", method="whisper")
    assert (result.is_success, result.retryable) == (False, False)
    assert "'whisper'" in (result.error_message or "")


def test_unknown_callable_is_a_permanent_failure_naming_it_and_the_modules(
    make_module: Callable[..., str],
) -> None:
    module = make_module(HANDLERS_SOURCE)
    registry = load_handler_modules([module])
    for callable_name in ("no_such_handler", "no_such_pkg.mod.Klass", f"{module}:missing"):
        result = run(registry, callable_name)
        assert result.is_success is False
        assert result.retryable is False
        assert result.error_type == "handler_not_found"
        assert repr(callable_name) in (result.error_message or "")
        assert module in (result.error_message or "")


def test_unknown_callable_without_modules_says_so() -> None:
    with pytest.raises(HandlerNotFoundError, match="no --handlers"):
        HandlerRegistry().resolve("ghost")


def test_broken_module_on_the_path_is_a_permanent_failure_with_the_cause(
    make_module: Callable[..., str],
) -> None:
    broken = make_module("import no_such_dependency_xyz\n")
    result = run(HandlerRegistry(), f"{broken}.Handler")
    assert result.retryable is False
    assert "no_such_dependency_xyz" in (result.error_message or "")


def test_loading_a_missing_handler_module_fails_at_start() -> None:
    with pytest.raises(HandlerLoadError, match="no_such_module_abc"):
        load_handler_modules(["no_such_module_abc"])


def test_two_classes_claiming_one_name_are_rejected() -> None:
    class One(StepHandler):
        handler_name = "dup"

    class Two(StepHandler):
        handler_name = "dup"

    registry = HandlerRegistry()
    registry.register(One)
    registry.register(One)  # the same class again is fine
    with pytest.raises(HandlerLoadError, match="dup"):
        registry.register(Two)


def test_register_programmatically_under_another_name() -> None:
    class Echo(StepHandler):
        handler_name = "echo"

        def call(self, context: StepContext) -> Any:
            return {"name": context.get_input("name")}

    registry = HandlerRegistry()
    assert registry.register(Echo, name="echo_v2") == "echo_v2"
    assert run(registry, "echo_v2").result == {"name": "ada"}
    with pytest.raises(TypeError):
        registry.register(42)  # type: ignore[arg-type]


def test_each_step_gets_a_fresh_handler_instance() -> None:
    class Counter(StepHandler):
        handler_name = "counter"

        def __init__(self) -> None:
            self.calls = 0

        def call(self, context: StepContext) -> Any:
            self.calls += 1
            return {"calls": self.calls}

    registry = HandlerRegistry()
    registry.register(Counter)
    assert [run(registry, "counter").result for _ in range(2)] == [{"calls": 1}] * 2
