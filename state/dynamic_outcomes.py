"""Read and check what a decision or batchable handler returned (pure; no database).

A decision step's result carries `decision_point_outcome` (`{"type": "create_steps",
"step_names": [...]}` or `{"type": "no_branches"}`); a batchable step's result carries
`batch_processing_outcome` (`{"type": "create_batches", "worker_template_name": ...,
"cursor_configs": [...]}` or `{"type": "no_batches"}`), as Tasker's handlers write them.
Anything else is an `OutcomeError`: the step then fails permanently with its message,
because running the same handler again would return the same thing.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tasker.state.dynamic_plan import decision_children, graph_of
from tasker.state.template_model import BatchConfig, TaskTemplate

DECISION_KEY = "decision_point_outcome"
BATCH_KEY = "batch_processing_outcome"
#: Tasker's Python helper names the worker `batch_worker` unless told otherwise.
_DEFAULT_WORKER_NAME = "batch_worker"
#: More instances than this is almost surely a handler bug (e.g. batch_size 1).
MAX_BATCHES = 10_000


class OutcomeError(ValueError):
    """A decision or batch outcome the engine cannot apply; says what the handler must fix."""

    error_type = "invalid_outcome"


class DecisionOutcome(msgspec.Struct, frozen=True):
    """The children a decision chose (empty for `no_branches`)."""

    chosen: tuple[str, ...]


class CursorRange(msgspec.Struct, frozen=True):
    """One batch worker's share of the work: start inclusive, end exclusive (any JSON)."""

    batch_id: str
    start_cursor: Any
    end_cursor: Any
    batch_size: Any = None


class BatchOutcome(msgspec.Struct, frozen=True):
    """The batches a batchable step asked for (none: one no-op worker)."""

    worker: str
    cursors: tuple[CursorRange, ...]
    config: BatchConfig
    batch_metadata: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def no_batches(self) -> bool:
        return not self.cursors


def decision_outcome(template: TaskTemplate, step: str, result: Any) -> DecisionOutcome:
    """The checked outcome of decision `step`; OutcomeError naming what is wrong."""
    raw = _outcome_mapping(result, DECISION_KEY, step, "decision_success / decision_no_branches")
    kind = raw.get("type")
    if kind == "no_branches":
        return DecisionOutcome(())
    if kind != "create_steps":
        raise OutcomeError(f"decision step {step!r}: unknown outcome type {kind!r}")
    names = raw.get("step_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise OutcomeError(f"decision step {step!r}: step_names must be a list of step names")
    allowed = decision_children(graph_of(template), step)
    undeclared = [name for name in names if name not in allowed]
    if undeclared:
        raise OutcomeError(
            f"decision step {step!r} chose undeclared step(s) {undeclared}; it may create "
            f"only its declared children: {', '.join(allowed) or 'none'}"
        )
    return DecisionOutcome(tuple(dict.fromkeys(names)))


def chosen_steps(result: Any) -> tuple[str, ...]:
    """The children a completed (already checked) decision chose; none if unreadable."""
    raw = result.get(DECISION_KEY) if isinstance(result, dict) else None
    if not isinstance(raw, dict) or raw.get("type") != "create_steps":
        return ()
    names = raw.get("step_names")
    return tuple(n for n in names if isinstance(n, str)) if isinstance(names, list) else ()


def batch_outcome(template: TaskTemplate, step: str, result: Any) -> BatchOutcome:
    """The checked outcome of batchable `step`; OutcomeError naming what is wrong."""
    raw = _outcome_mapping(result, BATCH_KEY, step, "batch_analyzer_success / no_batches_outcome")
    worker, config = _worker_of(template, step, raw.get("worker_template_name"))
    metadata = result.get("batch_metadata") if isinstance(result, dict) else None
    extra = metadata if isinstance(metadata, dict) else {}
    kind = raw.get("type")
    if kind == "no_batches":
        return BatchOutcome(worker, (), config, extra)
    if kind != "create_batches":
        raise OutcomeError(f"batchable step {step!r}: unknown outcome type {kind!r}")
    cursors = _cursor_ranges(step, raw.get("cursor_configs"))
    return BatchOutcome(worker, cursors, config, extra)


def _outcome_mapping(result: Any, key: str, step: str, helpers: str) -> dict[str, Any]:
    raw = result.get(key) if isinstance(result, dict) else None
    if not isinstance(raw, dict):
        raise OutcomeError(
            f"step {step!r} must return {key!r} in its result (use {helpers}); got "
            f"{sorted(result) if isinstance(result, dict) else type(result).__name__}"
        )
    return raw


def _worker_of(template: TaskTemplate, step: str, named: Any) -> tuple[str, BatchConfig]:
    config = template.step(step).batch_config or BatchConfig()
    worker = config.worker_template or _only_worker_child(template, step)
    if named not in (None, worker, _DEFAULT_WORKER_NAME) or worker is None:
        raise OutcomeError(
            f"batchable step {step!r} named worker {named!r}, but its batch_config."
            f"worker_template is {worker!r}"
        )
    own = template.step(worker).batch_config
    # The worker's own batch_config (required on batch_worker steps) bounds its instances.
    return worker, own or config


def _only_worker_child(template: TaskTemplate, step: str) -> str | None:
    graph = graph_of(template)
    workers = [c for c in graph.children[step] if graph.step(c).type == "batch_worker"]
    return workers[0] if len(workers) == 1 else None


def _cursor_ranges(step: str, raw: Any) -> tuple[CursorRange, ...]:
    if not isinstance(raw, list) or not raw:
        raise OutcomeError(
            f"batchable step {step!r}: create_batches needs a non-empty cursor_configs list "
            "(return no_batches when there is nothing to do)"
        )
    if len(raw) > MAX_BATCHES:
        raise OutcomeError(f"batchable step {step!r}: {len(raw)} batches, over {MAX_BATCHES}")
    return tuple(_cursor_range(step, index, entry) for index, entry in enumerate(raw))


def _cursor_range(step: str, index: int, entry: Any) -> CursorRange:
    if not isinstance(entry, dict) or "start_cursor" not in entry or "end_cursor" not in entry:
        raise OutcomeError(
            f"batchable step {step!r}: cursor_configs[{index}] needs start_cursor and end_cursor"
        )
    start, end = entry["start_cursor"], entry["end_cursor"]
    size = entry.get("batch_size")
    if size is None and isinstance(start, int) and isinstance(end, int):
        size = end - start
    return CursorRange(f"{index + 1:03d}", start, end, size)
