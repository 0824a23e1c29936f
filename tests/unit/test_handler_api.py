"""The handler API: StepContext accessors, result factories, errors, the decorator style."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tasker.handlers import (
    ErrorType,
    PermanentError,
    RetryableError,
    StepContext,
    StepHandler,
    StepHandlerResult,
    depends_on,
    inputs,
    step_handler,
)
from tasker.handlers.errors import (
    NetworkError,
    NotFoundError,
    RateLimitError,
    StepTimeoutError,
    TaskerError,
    ValidationError,
)
from tasker.handlers.functional import HANDLER_CLASS_ATTR
from tasker.handlers.outcome import result_from_exception, result_from_value, settle
from tasker.messaging.messages import HandlerSpec, StepMessage


def step_message(**overrides: Any) -> StepMessage:
    fields: dict[str, Any] = {
        "task_uuid": uuid.uuid4(),
        "step_uuid": uuid.uuid4(),
        "namespace": "orders",
        "task_name": "fulfil",
        "task_version": "1.0.0",
        "step_name": "charge",
        "handler": HandlerSpec("charge_card", initialization={"gateway": "stripe", "retries": 2}),
        "attempt": 1,
        "max_attempts": 3,
        "retryable": True,
        "input_data": {"order_id": 42, "note": None},
        "dependency_results": {
            "validate": {"result": {"total": 99, "lines": {"count": 3}}},
            "raw": 7,
            "batch_002": {"result": {"n": 2}},
            "batch_001": {"result": {"n": 1}},
            "batch_003": {"result": None},
        },
        "correlation_id": "corr-1",
        "trace_context": {"traceparent": "00-abc-def-01"},
        "step_inputs": {"cursor": {"start": 0, "end": 10}},
    }
    fields.update(overrides)
    return StepMessage(**fields)


def context_for(**overrides: Any) -> StepContext:
    return StepContext.from_message(step_message(**overrides))


# StepContext


def test_context_carries_the_message_fields() -> None:
    message = step_message()
    context = StepContext.from_message(message)
    assert context.task_uuid == message.task_uuid
    assert context.step_uuid == message.step_uuid
    assert context.step_name == "charge"
    assert context.handler_name == "charge_card"
    assert context.namespace == "orders"
    assert (context.task_name, context.task_version) == ("fulfil", "1.0.0")
    assert context.correlation_id == "corr-1"
    assert context.input_data == {"order_id": 42, "note": None}
    assert context.dependency_results is message.dependency_results
    assert context.step_config == {"gateway": "stripe", "retries": 2}
    assert context.step_inputs == {"cursor": {"start": 0, "end": 10}}
    assert context.trace_context == {"traceparent": "00-abc-def-01"}


def test_get_input_and_get_input_or() -> None:
    context = context_for()
    assert context.get_input("order_id") == 42
    assert context.get_input("missing") is None
    assert context.get_input_or("order_id", 0) == 42
    assert context.get_input_or("missing", "dflt") == "dflt"
    assert context.get_input_or("note", "dflt") == "dflt"  # None counts as missing


def test_get_config_reads_handler_initialization() -> None:
    context = context_for()
    assert context.get_config("gateway") == "stripe"
    assert context.get_config("missing") is None


def test_get_dependency_result_unwraps_the_result_envelope() -> None:
    context = context_for()
    assert context.get_dependency_result("validate") == {"total": 99, "lines": {"count": 3}}
    assert context.get_dependency_result("raw") == 7
    assert context.get_dependency_result("missing") is None


def test_get_dependency_field_walks_a_path() -> None:
    context = context_for()
    assert context.get_dependency_field("validate", "total") == 99
    assert context.get_dependency_field("validate", "lines", "count") == 3
    assert context.get_dependency_field("validate", "lines", "nope") is None
    assert context.get_dependency_field("validate", "total", "deeper") is None
    assert context.get_dependency_field("missing", "x") is None
    assert context.get_dependency_field("validate") == {"total": 99, "lines": {"count": 3}}


def test_get_all_dependency_results_by_prefix_in_name_order_skipping_none() -> None:
    context = context_for()
    assert context.get_all_dependency_results("batch_") == [{"n": 1}, {"n": 2}]
    assert context.get_all_dependency_results("zzz") == []
    assert set(context.get_dependency_result_keys()) == {
        "validate",
        "raw",
        "batch_001",
        "batch_002",
        "batch_003",
    }


@pytest.mark.parametrize(
    ("attempt", "max_attempts", "retry_count", "is_retry", "is_last"),
    [
        (1, 3, 0, False, False),
        (2, 3, 1, True, False),
        (3, 3, 2, True, True),
        (1, 1, 0, False, True),
    ],
)
def test_retry_accessors(
    attempt: int, max_attempts: int, retry_count: int, is_retry: bool, is_last: bool
) -> None:
    context = context_for(attempt=attempt, max_attempts=max_attempts)
    assert context.retry_count == retry_count
    assert context.max_retries == max_attempts
    assert context.attempt == attempt
    assert context.is_retry() is is_retry
    assert context.is_last_retry() is is_last


def test_checkpoint_accessors_with_a_checkpoint() -> None:
    checkpoint = {"cursor": 500, "items_processed": 500, "accumulated_results": {"sum": 12}}
    context = context_for(checkpoint=checkpoint)
    assert context.has_checkpoint()
    assert context.checkpoint == checkpoint
    assert context.checkpoint_cursor == 500
    assert context.checkpoint_items_processed == 500
    assert context.accumulated_results == {"sum": 12}


def test_checkpoint_accessors_without_a_checkpoint() -> None:
    context = context_for()
    assert not context.has_checkpoint()
    assert context.checkpoint_cursor is None
    assert context.checkpoint_items_processed == 0
    assert context.accumulated_results is None


# StepHandlerResult and ErrorType


def test_success_factory() -> None:
    result = StepHandlerResult.success({"a": 1}, metadata={"ms": 3})
    assert result.is_success and result.is_success_result() and not result.is_failure_result()
    assert result.result == {"a": 1}
    assert result.metadata == {"ms": 3}
    assert result.error_message is None
    assert StepHandlerResult.success().result == {}
    assert StepHandlerResult.success_handler_result({"b": 2}).result == {"b": 2}


def test_failure_factory_defaults() -> None:
    result = StepHandlerResult.failure("boom")
    assert not result.is_success and result.is_failure_result()
    assert result.error_message == "boom"
    assert result.error_type == "handler_error"
    assert result.retryable is True
    assert result.metadata == {}
    assert result.error_code is None
    assert result.retry_after_seconds is None


def test_failure_factory_with_every_field() -> None:
    result = StepHandlerResult.failure(
        "declined",
        error_type=ErrorType.VALIDATION_ERROR,
        retryable=False,
        metadata={"card": "1234"},
        error_code="CARD_DECLINED",
        retry_after_seconds=5.0,
    )
    assert result.error_type == "validation_error"
    assert type(result.error_type) is str
    assert result.retryable is False
    assert result.metadata == {"card": "1234"}
    assert result.error_code == "CARD_DECLINED"
    assert result.retry_after_seconds == 5.0
    legacy = StepHandlerResult.failure_handler_result("x", "timeout", False)
    assert (legacy.error_type, legacy.retryable) == ("timeout", False)


def test_error_type_values_and_helpers() -> None:
    # A StrEnum member is a str and compares equal to its plain string. (Written out as
    # literal pairs, mypy's strict equality would call each comparison non-overlapping.)
    standard: list[tuple[ErrorType, str]] = [
        (ErrorType.PERMANENT_ERROR, "permanent_error"),
        (ErrorType.RETRYABLE_ERROR, "retryable_error"),
        (ErrorType.VALIDATION_ERROR, "validation_error"),
        (ErrorType.TIMEOUT, "timeout"),
        (ErrorType.HANDLER_ERROR, "handler_error"),
    ]
    for member, text in standard:
        assert member == text
    assert ErrorType.is_standard("timeout") and not ErrorType.is_standard("custom")
    assert ErrorType.is_typically_retryable("timeout")
    assert not ErrorType.is_typically_retryable("permanent_error")


# StepHandler


class Charge(StepHandler):
    handler_name = "charge_card"
    handler_version = "2.1.0"

    def call(self, context: StepContext) -> StepHandlerResult:
        if context.get_input("order_id") is None:
            return self.failure("no order", error_type="validation_error", retryable=False)
        return self.success({"charged": context.get_dependency_field("validate", "total")})


def test_class_handler_helpers() -> None:
    handler = Charge()
    assert (handler.name, handler.version) == ("charge_card", "2.1.0")
    assert handler.call(context_for()).result == {"charged": 99}
    failure = handler.call(context_for(input_data={}))
    assert (failure.error_message, failure.retryable) == ("no order", False)
    assert "charge_card" in repr(handler)


def test_base_handler_without_call_raises() -> None:
    with pytest.raises(NotImplementedError):
        StepHandler().call(context_for())


# Errors and how they map to results


def test_retryable_and_permanent_errors_classify() -> None:
    assert RetryableError("x").retryable and not PermanentError("x").retryable
    for retryable_cls in (StepTimeoutError, NetworkError, RateLimitError):
        assert issubclass(retryable_cls, RetryableError)
    for permanent_cls in (ValidationError, NotFoundError):
        assert issubclass(permanent_cls, PermanentError)
    assert TaskerError("x", retryable=False).retryable is False


def test_rate_limit_error_carries_its_delay_into_the_result() -> None:
    result = result_from_exception(RateLimitError("slow down", retry_after=30, error_code="429"))
    assert result.retryable is True
    assert result.retry_after_seconds == 30
    assert result.error_code == "429"
    assert result.error_type == "retryable_error"
    assert result.error_message == "slow down"


def test_permanent_error_becomes_a_non_retryable_failure() -> None:
    result = result_from_exception(ValidationError("bad email", metadata={"field": "email"}))
    assert result.retryable is False
    assert result.error_type == "validation_error"
    assert result.metadata["field"] == "email"
    assert result.metadata["exception_class"].endswith("ValidationError")


def test_any_other_exception_is_retryable_with_type_message_and_traceback() -> None:
    empty: dict[str, int] = {}
    try:
        empty["missing"]
    except KeyError as exc:
        result = result_from_exception(exc)
    assert result.retryable is True
    assert result.error_type == "handler_error"
    assert result.error_message == "KeyError: 'missing'"
    assert result.metadata["exception_class"] == "builtins.KeyError"
    assert result.backtrace[0].startswith("Traceback")
    assert any("test_handler_api.py" in line for line in result.backtrace)


def test_returned_values_become_results() -> None:
    assert result_from_value({"a": 1}).result == {"a": 1}
    assert result_from_value(None).result == {}
    assert result_from_value(5).result == {"result": 5}
    failure = StepHandlerResult.failure("x")
    assert result_from_value(failure) is failure


def test_settle_runs_awaitables() -> None:
    async def compute() -> int:
        await asyncio.sleep(0)
        return 3

    assert settle(compute()) == 3
    assert settle(4) == 4


# Decorator style


@step_handler("process_order", version="1.2.0")
@depends_on(cart="validate")
@inputs("order_id", "note")
def process_order(cart: dict[str, Any], order_id: int, note: Any, context: StepContext) -> Any:
    return {"total": cart["total"], "order": order_id, "note": note, "step": context.step_name}


def handler_class(fn: Any) -> type[StepHandler]:
    cls: type[StepHandler] = getattr(fn, HANDLER_CLASS_ATTR)
    return cls


def test_decorated_function_injects_dependencies_inputs_and_context() -> None:
    cls = handler_class(process_order)
    assert (cls.handler_name, cls.handler_version) == ("process_order", "1.2.0")
    result = cls().call(context_for())
    assert result.result == {"total": 99, "order": 42, "note": None, "step": "charge"}


def test_decorator_order_does_not_matter() -> None:
    @inputs("order_id")
    @step_handler("outer_inputs")
    def fn(order_id: int) -> dict[str, int]:
        return {"order": order_id}

    assert handler_class(fn)().call(context_for()).result == {"order": 42}


def test_decorated_function_stays_callable() -> None:
    assert process_order({"total": 1}, 2, None, context_for())["total"] == 1


def test_decorated_function_results_and_exceptions() -> None:
    @step_handler("fails")
    def fails(context: StepContext) -> None:
        raise PermanentError("nope")

    @step_handler("explicit")
    def explicit() -> StepHandlerResult:
        return StepHandlerResult.failure("told you", retryable=False)

    @step_handler("async_one")
    @inputs("order_id")
    async def async_one(order_id: int) -> dict[str, int]:
        await asyncio.sleep(0)
        return {"id": order_id}

    failed = handler_class(fails)().call(context_for())
    assert (failed.is_success, failed.retryable, failed.error_message) == (False, False, "nope")
    assert handler_class(explicit)().call(context_for()).error_message == "told you"
    assert handler_class(async_one)().call(context_for()).result == {"id": 42}


def test_missing_dependency_or_input_injects_none() -> None:
    @step_handler("sparse")
    @depends_on(gone="no_such_step")
    @inputs("no_such_key")
    def sparse(gone: Any, no_such_key: Any) -> dict[str, Any]:
        return {"gone": gone, "key": no_such_key}

    assert handler_class(sparse)().call(context_for()).result == {"gone": None, "key": None}
