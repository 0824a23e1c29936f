"""Run one step message's handler and say how it went. Never raises."""

from __future__ import annotations

import logging

from tasker.handlers.context import StepContext
from tasker.handlers.outcome import result_from_exception, result_from_value, settle
from tasker.handlers.registry import HandlerLoadError, HandlerNotFoundError, HandlerRegistry
from tasker.handlers.result import ErrorType, StepHandlerResult
from tasker.messaging.messages import StepMessage

log = logging.getLogger(__name__)


def execute_step(registry: HandlerRegistry, message: StepMessage) -> StepHandlerResult:
    """Resolve the step's handler, call it, and turn its return or exception into a result.

    An unknown or unloadable handler is a permanent failure: retrying cannot make it appear.
    """
    spec = message.handler
    try:
        handler = registry.resolve(spec.callable, spec.method)
    except (HandlerNotFoundError, HandlerLoadError) as exc:
        log.error("step %s (%s): %s", message.step_name, message.step_uuid, exc)
        return StepHandlerResult.failure(
            str(exc), error_type=ErrorType.HANDLER_NOT_FOUND, retryable=False
        )
    try:
        return result_from_value(settle(handler.invoke(StepContext.from_message(message))))
    except BaseException as exc:
        # BaseException too: a handler calling sys.exit() must not end a worker thread.
        return result_from_exception(exc)
