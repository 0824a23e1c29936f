"""The data of batch processing as handlers see it: cursors, worker inputs, outcomes.

A batchable (analyzer) step returns `batch_processing_outcome` with cursor ranges; the
orchestrator creates one worker instance per range, whose `context.step_inputs` holds
Tasker's BatchWorkerInputs: `{"cursor": {batch_id, start_cursor, end_cursor, batch_size},
"batch_metadata": {...}, "is_no_op": bool}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tasker.handlers.context import StepContext
from tasker.handlers.errors import TaskerError

BATCH_KEY = "batch_processing_outcome"
CHECKPOINT_MARKER = "checkpoint_yield"


@dataclass(frozen=True)
class CursorConfig:
    """One batch's range: start inclusive, end exclusive."""

    start_cursor: Any
    end_cursor: Any
    step_size: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchWorkerConfig:
    """One worker's range, as `create_cursor_configs` (worker-count style) makes them."""

    batch_id: str
    cursor_start: int
    cursor_end: int
    row_count: int
    worker_index: int
    total_workers: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "cursor_start": self.cursor_start,
            "cursor_end": self.cursor_end,
            "row_count": self.row_count,
            "worker_index": self.worker_index,
            "total_workers": self.total_workers,
        }


@dataclass(frozen=True)
class BatchAnalyzerOutcome:
    """What an analyzer decided: the ranges, the total, metadata for every worker."""

    cursor_configs: list[CursorConfig]
    total_items: int = 0
    batch_metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchWorkerOutcome:
    """What a worker did with its range."""

    items_processed: int
    items_succeeded: int = 0
    items_failed: int = 0
    items_skipped: int = 0
    results: list[Any] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    last_cursor: Any = None
    batch_metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchWorkerContext:
    """A worker instance's range and settings, from its step inputs."""

    batch_id: str
    start_cursor: Any
    end_cursor: Any
    batch_size: Any = None
    is_no_op: bool = False
    batch_metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def cursor_config(self) -> CursorConfig:
        return CursorConfig(self.start_cursor, self.end_cursor)

    @property
    def batch_index(self) -> int:
        return int(self.batch_metadata.get("batch_index") or 0)

    @property
    def total_batches(self) -> int:
        return int(self.batch_metadata.get("total_batches") or 0)

    @property
    def failure_strategy(self) -> str | None:
        return self.batch_metadata.get("failure_strategy")

    @classmethod
    def from_step_context(cls, context: StepContext) -> BatchWorkerContext | None:
        """From the engine's step inputs, or Tasker's older `batch_context` config; or None."""
        cursor = context.step_inputs.get("cursor")
        if isinstance(cursor, dict) and "start_cursor" in cursor:
            return cls(
                str(cursor.get("batch_id", "")),
                cursor["start_cursor"],
                cursor.get("end_cursor"),
                cursor.get("batch_size"),
                bool(context.step_inputs.get("is_no_op")),
                dict(context.step_inputs.get("batch_metadata") or {}),
            )
        return cls._from_config(context.step_config.get("batch_context"))

    @classmethod
    def _from_config(cls, raw: Any) -> BatchWorkerContext | None:
        if not isinstance(raw, dict) or not isinstance(raw.get("cursor_config"), dict):
            return None
        cursor = raw["cursor_config"]
        metadata = {k: raw[k] for k in ("batch_index", "total_batches") if k in raw}
        return cls(
            str(raw.get("batch_id", "")),
            cursor.get("start_cursor"),
            cursor.get("end_cursor"),
            None,
            False,
            {**metadata, **(raw.get("batch_metadata") or {})},
        )


class CheckpointYield(TaskerError):  # noqa: N818 - Tasker's name for the signal
    """Raised by `checkpoint_yield`: the worker stops here and is re-dispatched at once.

    It travels as a failure-status report marked `checkpoint_yield` in its metadata; the
    orchestrator saves the checkpoint, puts the step back to pending without using up an
    attempt, and the next dispatch carries it (`context.checkpoint_cursor`, ...).
    """

    retryable = True
    error_type = "checkpoint_yield"

    def __init__(self, cursor: Any, items_processed: int, accumulated_results: Any) -> None:
        checkpoint = {
            "cursor": cursor,
            "items_processed": items_processed,
            "accumulated_results": accumulated_results,
        }
        super().__init__(
            f"checkpoint at cursor {cursor!r} ({items_processed} items processed)",
            metadata={CHECKPOINT_MARKER: checkpoint},
        )
