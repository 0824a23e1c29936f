"""Ids that every log line about a task or step carries (correlation_id, task_uuid, ...).

`bound(...)` sets them for the code running inside it (contextvars: per thread and per
asyncio task); `ContextFilter` copies them onto each log record, where the JSON formatter
writes them out, with the current trace and span ids.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace

FIELDS = ("correlation_id", "task_uuid", "step_uuid", "namespace")

_current: ContextVar[dict[str, str]] = ContextVar("tasker_log_context", default={})  # noqa: B039 - never mutated


@contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """Attach these ids (None values are left out) to log lines emitted inside."""
    added = {key: str(value) for key, value in ids.items() if value is not None}
    token = _current.set({**_current.get(), **added})
    try:
        yield
    finally:
        _current.reset(token)


def current() -> dict[str, str]:
    return dict(_current.get())


class ContextFilter(logging.Filter):
    """Copies the bound ids and the active trace/span ids onto the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = dict(_current.get())
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            fields["trace_id"] = format(context.trace_id, "032x")
            fields["span_id"] = format(context.span_id, "016x")
        record.tasker_context = fields
        return True
