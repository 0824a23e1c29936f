"""Warn about keys a template uses that Tasker does not know (a warning, never an error)."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterator
from typing import Any

import msgspec

from tasker.state.template_model import (
    BatchConfig,
    HandlerDefinition,
    RetryPolicy,
    StepDefinition,
    TaskTemplate,
)

log = logging.getLogger("tasker.templates")

DEPENDENCIES_ALIAS = "depends_on"
_NESTED: dict[str, type[msgspec.Struct]] = {
    "handler": HandlerDefinition,
    "retry": RetryPolicy,
    "batch_config": BatchConfig,
}


def warn_unknown_keys(document: dict[str, Any], source: str) -> None:
    """Log one WARNING on `tasker.templates` per unknown key, naming file, step and key."""
    for step, key, known in _unknown_keys(document):
        where = f"{source}: step {step!r}" if step is not None else source
        hint = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        log.warning("%s: unknown key %r ignored%s", where, key, suggestion)


def _unknown_keys(document: dict[str, Any]) -> Iterator[tuple[str | None, str, list[str]]]:
    for key, known in _unknown_in(document, TaskTemplate):
        yield None, key, known
    steps = document.get("steps")
    for index, step in enumerate(steps if isinstance(steps, list) else []):
        if isinstance(step, dict):
            name = step.get("name")
            label = name if isinstance(name, str) else f"steps[{index}]"
            for key, known in _unknown_in_step(step):
                yield label, key, known


def _unknown_in_step(step: dict[str, Any]) -> Iterator[tuple[str, list[str]]]:
    yield from _unknown_in(step, StepDefinition, extra=(DEPENDENCIES_ALIAS,))
    for field, kind in _NESTED.items():
        if isinstance(step.get(field), dict):
            for key, known in _unknown_in(step[field], kind):
                yield f"{field}.{key}", known


def _unknown_in(
    mapping: dict[str, Any], kind: type[msgspec.Struct], extra: tuple[str, ...] = ()
) -> Iterator[tuple[str, list[str]]]:
    known = [*kind.__struct_fields__, *extra]
    for key in mapping:
        if key not in known:
            yield str(key), known
