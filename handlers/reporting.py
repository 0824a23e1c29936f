"""Turn a handler's result into the wire message the orchestrator reads."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime

import msgspec

from tasker.handlers.result import ErrorType, StepHandlerResult
from tasker.messaging.messages import StepError, StepMessage, StepResultMessage, encode
from tasker.telemetry.hooks import inject


def new_worker_id() -> str:
    """`host:pid:random` - unique per worker process, readable by operators."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def encode_result(
    message: StepMessage,
    result: StepHandlerResult,
    *,
    started_at: datetime,
    finished_at: datetime,
    worker_id: str,
) -> bytes:
    """The encoded StepResultMessage for `result`.

    A result that cannot be serialized becomes a failure saying so, rather than an error
    that would leave the step to be redelivered and fail the same way forever.
    """
    reply = _result_message(message, result, started_at, finished_at, worker_id)
    try:
        return encode(reply)
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        unencodable = StepHandlerResult.failure(
            f"handler {message.handler.callable!r} returned a result that is not "
            f"JSON-serializable: {exc}",
            error_type=ErrorType.HANDLER_ERROR,
            retryable=True,
        )
        return encode(_result_message(message, unencodable, started_at, finished_at, worker_id))


def _result_message(
    message: StepMessage,
    result: StepHandlerResult,
    started_at: datetime,
    finished_at: datetime,
    worker_id: str,
) -> StepResultMessage:
    return StepResultMessage(
        task_uuid=message.task_uuid,
        step_uuid=message.step_uuid,
        attempt=message.attempt,
        fence=message.fence,
        status="success" if result.is_success else "failure",
        started_at=started_at,
        finished_at=finished_at,
        worker_id=worker_id,
        result=result.result if result.is_success else None,
        error=None if result.is_success else _step_error(result),
        metadata=result.metadata,
        correlation_id=message.correlation_id,
        # The worker's span when there is one, so the orchestrator continues from it.
        trace_context=inject() or message.trace_context,
    )


def _step_error(result: StepHandlerResult) -> StepError:
    return StepError(
        message=result.error_message or "handler reported a failure without a message",
        error_type=str(result.error_type or ErrorType.HANDLER_ERROR),
        retryable=result.retryable,
        error_code=result.error_code,
        retry_after_seconds=result.retry_after_seconds,
        backtrace=result.backtrace,
    )
