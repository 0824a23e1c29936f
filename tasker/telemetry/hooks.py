"""One-line hooks the pipeline calls: a span continuing the message's trace, with the ids
bound for logging. Kept here so actors/ and handlers/ carry only a `with` line each."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from opentelemetry.trace import Span, SpanKind

from tasker.messaging.messages import StepMessage
from tasker.telemetry import logcontext, tracing

inject = tracing.inject
within_task = tracing.within_task


@contextmanager
def traced(
    name: str,
    carrier: Mapping[str, str] | None,
    *,
    task_uuid: UUID | None = None,
    step_uuid: UUID | None = None,
    correlation_id: str | None = None,
    namespace: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    **attributes: Any,
) -> Iterator[Span]:
    """Run the block in a span of the trace in `carrier`, logging with these ids."""
    ids: dict[str, Any] = {
        "task_uuid": task_uuid,
        "step_uuid": step_uuid,
        "correlation_id": correlation_id,
        "namespace": namespace,
    }
    with logcontext.bound(**ids), tracing.span(name, carrier, kind=kind, **ids, **attributes) as s:
        yield s


def worker_span(message: StepMessage) -> Any:
    """The worker's span for one attempt: handler run and report."""
    return traced(
        "tasker.step.execute",
        message.trace_context,
        kind=SpanKind.CONSUMER,
        task_uuid=message.task_uuid,
        step_uuid=message.step_uuid,
        correlation_id=message.correlation_id,
        namespace=message.namespace,
        step_name=message.step_name,
        attempt=message.attempt,
    )
