"""The class style of handler: subclass `StepHandler`, set `handler_name`, write `call`."""

from __future__ import annotations

from typing import Any

from tasker.handlers.context import StepContext
from tasker.handlers.result import ErrorType, StepHandlerResult


class StepHandler:
    """Base of class-style handlers.

    `handler_name` is the registry key a template's `handler.callable` names. A new instance
    runs each step (handlers need not be thread-safe); `call` may also be `async def`.
    """

    handler_name: str = ""
    handler_version: str = "1.0.0"

    def call(self, context: StepContext) -> Any:
        """Run the step. Return a StepHandlerResult (a dict means success) or raise."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement call(context)")

    @property
    def name(self) -> str:
        """The registry key (the class name when `handler_name` is unset)."""
        return self.handler_name or type(self).__name__

    @property
    def version(self) -> str:
        """The handler's version string."""
        return self.handler_version

    def success(
        self, result: Any = None, metadata: dict[str, Any] | None = None
    ) -> StepHandlerResult:
        """Shortcut for `StepHandlerResult.success`."""
        return StepHandlerResult.success(result, metadata)

    def failure(
        self,
        message: str,
        error_type: str = ErrorType.HANDLER_ERROR,
        retryable: bool = True,
        metadata: dict[str, Any] | None = None,
        error_code: str | None = None,
        *,
        retry_after_seconds: float | None = None,
    ) -> StepHandlerResult:
        """Shortcut for `StepHandlerResult.failure`."""
        return StepHandlerResult.failure(
            message,
            error_type,
            retryable,
            metadata,
            error_code,
            retry_after_seconds=retry_after_seconds,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r})"
