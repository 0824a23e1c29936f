"""Turn whatever a handler returned or raised into a StepHandlerResult."""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import Awaitable
from typing import Any

from tasker.handlers.errors import TaskerError
from tasker.handlers.result import ErrorType, StepHandlerResult


def settle(value: Any) -> Any:
    """The value itself, or what it resolves to when an `async` handler returned an awaitable.

    Each awaitable runs on its own event loop in the calling (worker) thread.
    """
    if inspect.isawaitable(value):
        return asyncio.run(_await(value))
    return value


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def result_from_value(value: Any) -> StepHandlerResult:
    """A returned StepHandlerResult as is; a dict (or None) is a success with that result.

    Any other value is a success wrapped as `{"result": value}`, so dependents can read it
    with `get_dependency_result`.
    """
    if isinstance(value, StepHandlerResult):
        return value
    if value is None or isinstance(value, dict):
        return StepHandlerResult.success(value)
    return StepHandlerResult.success({"result": value})


def result_from_exception(exc: BaseException) -> StepHandlerResult:
    """The failure an exception stands for: classified for TaskerError, retryable otherwise."""
    if isinstance(exc, TaskerError):
        return _tasker_error_failure(exc)
    # An unexpected exception may be transient: retry it, and keep what a person needs.
    return StepHandlerResult.failure(
        f"{type(exc).__name__}: {exc}",
        error_type=ErrorType.HANDLER_ERROR,
        retryable=True,
        metadata={"exception_class": _qualified_name(type(exc))},
        backtrace=_backtrace(exc),
    )


def _tasker_error_failure(exc: TaskerError) -> StepHandlerResult:
    return StepHandlerResult.failure(
        exc.message,
        error_type=str(exc.error_type),
        retryable=exc.retryable,
        metadata={"exception_class": _qualified_name(type(exc)), **exc.metadata},
        error_code=exc.error_code,
        retry_after_seconds=exc.retry_after,
        backtrace=_backtrace(exc),
    )


def _backtrace(exc: BaseException) -> list[str]:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return [line.rstrip("\n") for line in lines]


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
