"""What a handler returns: `StepHandlerResult.success(...)` or `.failure(...)`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class ErrorType(enum.StrEnum):
    """Standard `error_type` values (any other string is allowed too)."""

    PERMANENT_ERROR = "permanent_error"
    RETRYABLE_ERROR = "retryable_error"
    VALIDATION_ERROR = "validation_error"
    TIMEOUT = "timeout"
    HANDLER_ERROR = "handler_error"
    HANDLER_NOT_FOUND = "handler_not_found"

    @classmethod
    def is_standard(cls, error_type: str) -> bool:
        """Whether `error_type` is one of these values."""
        return error_type in cls._value2member_map_

    @classmethod
    def is_typically_retryable(cls, error_type: str) -> bool:
        """The usual `retryable` flag for `error_type`."""
        return error_type in (cls.RETRYABLE_ERROR, cls.TIMEOUT)


@dataclass(frozen=True)
class StepHandlerResult:
    """The outcome of one handler call. Build it with `success` or `failure`.

    `is_success` is the flag (`success` is the factory, as in Tasker's API).
    """

    is_success: bool
    result: Any = None
    error_message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    retryable: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)
    retry_after_seconds: float | None = None
    backtrace: list[str] = field(default_factory=list)

    @classmethod
    def success(
        cls, result: Any = None, metadata: dict[str, Any] | None = None
    ) -> StepHandlerResult:
        """The step succeeded with `result` (a JSON-serializable value, usually a dict)."""
        return cls(
            is_success=True, result={} if result is None else result, metadata=metadata or {}
        )

    @classmethod
    def failure(
        cls,
        message: str,
        error_type: str = ErrorType.HANDLER_ERROR,
        retryable: bool = True,
        metadata: dict[str, Any] | None = None,
        error_code: str | None = None,
        *,
        retry_after_seconds: float | None = None,
        backtrace: list[str] | None = None,
    ) -> StepHandlerResult:
        """The step failed; `retryable=False` sends it straight to error."""
        return cls(
            is_success=False,
            error_message=message,
            error_type=str(error_type),
            error_code=error_code,
            retryable=retryable,
            metadata=metadata or {},
            retry_after_seconds=retry_after_seconds,
            backtrace=backtrace or [],
        )

    # Older Tasker factory names, kept so handlers using them run unchanged.
    @classmethod
    def success_handler_result(
        cls, result: Any = None, metadata: dict[str, Any] | None = None
    ) -> StepHandlerResult:
        """Alias of `success`."""
        return cls.success(result, metadata)

    @classmethod
    def failure_handler_result(
        cls,
        message: str,
        error_type: str = ErrorType.HANDLER_ERROR,
        retryable: bool = True,
        metadata: dict[str, Any] | None = None,
        error_code: str | None = None,
    ) -> StepHandlerResult:
        """Alias of `failure`."""
        return cls.failure(message, error_type, retryable, metadata, error_code)

    def is_success_result(self) -> bool:
        """Whether the step succeeded."""
        return self.is_success

    def is_failure_result(self) -> bool:
        """Whether the step failed."""
        return not self.is_success
