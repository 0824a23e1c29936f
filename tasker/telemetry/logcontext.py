"""Ids that every log line about a task or step carries (correlation_id, task_uuid, ...).

`bound(...)` sets them for the code running inside it (contextvars: per thread and per
asyncio task); `install()` makes every new log record carry them (`record.tasker_context`,
with the current trace and span ids), which the JSON formatter writes out.
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


def context_fields() -> dict[str, str]:
    """The bound ids plus the active trace and span ids."""
    fields = dict(_current.get())
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        fields["trace_id"] = format(span_context.trace_id, "032x")
        fields["span_id"] = format(span_context.span_id, "016x")
    return fields


_installed: list[bool] = []


def install() -> None:
    """Make every log record carry `tasker_context` (once per process)."""
    if _installed:
        return
    _installed.append(True)
    make_record = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.tasker_context = context_fields()
        return record

    logging.setLogRecordFactory(factory)
