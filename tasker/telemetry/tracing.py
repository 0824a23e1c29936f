"""Traces: one trace per task, from the API call to finalization.

The W3C trace context (`traceparent`) travels in the wire messages' `trace_context` and in
the actor messages, so each hop continues the trace it was handed. Without a configured
exporter the OpenTelemetry API is a no-op and these helpers cost next to nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tasker.config import Config

log = logging.getLogger(__name__)

_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("tasker")


def configure_tracing(config: Config, *, role: str) -> TracerProvider | None:
    """Install a tracer provider exporting per `config.otel_exporter` (None: tracing off)."""
    if config.otel_exporter == "none":
        return None
    return install_provider(_processor(config), service=f"{config.otel_service_name}-{role}")


def install_provider(processor: SpanProcessor, *, service: str) -> TracerProvider:
    """Install a tracer provider with `processor` (tests pass an in-memory exporter's)."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider


def _processor(config: Config) -> SpanProcessor:
    if config.otel_exporter == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    endpoint = config.otel_endpoint
    exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    return BatchSpanProcessor(exporter)


def tracing_enabled() -> bool:
    """Whether spans are recorded in this process (an SDK tracer provider is installed)."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


def inject() -> dict[str, str]:
    """The current trace context as a carrier (`traceparent`...), empty when none."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def within_task(
    live: Mapping[str, str] | None, stored: Mapping[str, str] | None
) -> Mapping[str, str] | None:
    """The context to continue for work on a task whose trace is `stored`.

    `live` (the context this work was handed) when it belongs to the task's trace, so the
    causal chain shows; else the task's own: work that starts with no live context (a
    retry timer, a sweep, an operator) or in another task's batch still joins its trace.
    """
    if stored and _trace_id(live) != _trace_id(stored):
        return stored
    return live


def _trace_id(carrier: Mapping[str, str] | None) -> int | None:
    found = _span_context(carrier)
    return found.trace_id if found is not None else None


def _span_context(carrier: Mapping[str, str] | None) -> trace.SpanContext | None:
    """The span a carrier names (None when it names none)."""
    if not carrier:
        return None
    found = trace.get_current_span(_propagator.extract(carrier)).get_span_context()
    return found if found.is_valid else None


@contextmanager
def span(
    name: str,
    carrier: Mapping[str, str] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    links: Sequence[Mapping[str, str]] = (),
    **attributes: Any,
) -> Iterator[Span]:
    """A span continuing the trace in `carrier` (or the current one), linked to the traces
    in `links`; ids as attributes."""
    parent = _propagator.extract(carrier) if carrier else None
    related = [Link(found) for found in map(_span_context, links) if found is not None]
    with _tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=_attributes(attributes), links=related
    ) as s:
        yield s


def start_span(
    name: str,
    carrier: Mapping[str, str] | None,
    *,
    start_time: int | None = None,
    **attributes: Any,
) -> Span:
    """A span continuing the trace in `carrier` that is not made current: for one piece of
    work done for several traces at once. The caller ends it (`span.end()`)."""
    parent = _propagator.extract(carrier) if carrier else None
    return _tracer.start_span(
        name, context=parent, attributes=_attributes(attributes), start_time=start_time
    )


def carrier_of(span: Span) -> dict[str, str]:
    """The trace context that continues `span`, as a carrier."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def _attributes(ids: Mapping[str, Any]) -> dict[str, str]:
    return {f"tasker.{key}": str(value) for key, value in ids.items() if value is not None}
