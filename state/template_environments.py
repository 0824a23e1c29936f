"""Per-environment template overrides (`environments.<env>.steps`), applied before typing.

Overrides work on the raw step mappings so a partial `retry` block changes only the
fields it names, and the merged result is type-checked like any other step.
"""

from __future__ import annotations

from typing import Any

from tasker.state.template_model import EnvironmentOverrides, StepOverride

ALL_STEPS = "ALL"


def apply_environment(raw_steps: list[Any], overrides: EnvironmentOverrides | None) -> list[Any]:
    """Raw steps with an environment's overrides applied; `ALL` entries first, then named.

    Applies `timeout_seconds` (replaced), `retry` fields (merged) and
    `handler.initialization` (merged, override wins). `None` (unknown env) changes nothing.
    """
    if overrides is None:
        return raw_steps
    ordered = sorted(overrides.steps, key=lambda entry: entry.name != ALL_STEPS)
    return [_override_step(raw, ordered) for raw in raw_steps]


def _override_step(raw: object, overrides: list[StepOverride]) -> object:
    if not isinstance(raw, dict):
        return raw
    step = dict(raw)
    for entry in overrides:
        if entry.name in (ALL_STEPS, step.get("name")):
            _apply_override(step, entry)
    return step


def _apply_override(step: dict[str, Any], entry: StepOverride) -> None:
    if entry.timeout_seconds is not None:
        step["timeout_seconds"] = entry.timeout_seconds
    if entry.retry:
        step["retry"] = _merged(step.get("retry"), entry.retry)
    handler = step.get("handler")
    if entry.handler is not None and isinstance(handler, dict):
        initialization = _merged(handler.get("initialization"), entry.handler.initialization)
        step["handler"] = {**handler, "initialization": initialization}


def _merged(base: object, changes: dict[str, Any]) -> object:
    """`base` updated with `changes`; a non-mapping `base` is kept for type checking to report."""
    if base is None:
        return dict(changes)
    if isinstance(base, dict):
        return {**base, **changes}
    return base
