"""Exceptions a handler raises to say how its step failed: retry it, or never.

Any other exception escaping a handler is a retryable failure (it may be transient); these
classes let a handler be explicit. The names follow Tasker's Python worker so its handlers
run unchanged (`TimeoutError` there is `StepTimeoutError` here, to avoid shadowing the
builtin; the `tasker_core` compatibility layer exports it under Tasker's name).
"""

from __future__ import annotations

from typing import Any

from tasker.handlers.result import ErrorType


class TaskerError(Exception):
    """Base of the handler error tree; `retryable` and `error_type` classify the failure."""

    retryable: bool = True
    error_type: str = ErrorType.HANDLER_ERROR

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        metadata: dict[str, Any] | None = None,
        error_code: str | None = None,
        retry_after: float | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable
        self.error_code = error_code
        # Seconds the step should wait before its next attempt (a Retry-After hint).
        self.retry_after = retry_after
        self.metadata: dict[str, Any] = {**(metadata or {}), **(context or {})}

    def to_dict(self) -> dict[str, Any]:
        """The error as plain data (what ends up in the step's failure record)."""
        return {
            "error_type": self.error_type,
            "message": self.message,
            "retryable": self.retryable,
            "error_code": self.error_code,
            "retry_after": self.retry_after,
            "metadata": self.metadata,
        }


class RetryableError(TaskerError):
    """A transient failure: the step is retried (after `retry_after` seconds, if given)."""

    retryable = True
    error_type = ErrorType.RETRYABLE_ERROR


class PermanentError(TaskerError):
    """A failure no retry can fix: the step goes straight to error."""

    retryable = False
    error_type = ErrorType.PERMANENT_ERROR


class StepTimeoutError(RetryableError):
    """An operation inside the handler took too long."""

    error_type = ErrorType.TIMEOUT


class NetworkError(RetryableError):
    """A connection failed or dropped."""


class RateLimitError(RetryableError):
    """A service asked us to slow down; pass its Retry-After as `retry_after`."""


class ServiceUnavailableError(RetryableError):
    """A dependency is down or overloaded for now."""


class ResourceContentionError(RetryableError):
    """A lock or resource is busy; another attempt later may get it."""


class ValidationError(PermanentError):
    """The input is invalid; the same input will always fail."""

    error_type = ErrorType.VALIDATION_ERROR


class NotFoundError(PermanentError):
    """A required entity does not exist."""


class AuthenticationError(PermanentError):
    """Credentials were rejected."""


class AuthorizationError(PermanentError):
    """The caller lacks permission."""


class ConfigurationError(PermanentError):
    """The handler or its environment is misconfigured."""


class BusinessLogicError(PermanentError):
    """The operation breaks a business rule."""
