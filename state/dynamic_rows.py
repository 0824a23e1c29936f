"""Step rows as `create_task` and `add_dynamic_steps` insert them, from template steps."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec

from tasker.state.dynamic_outcomes import BatchOutcome, CursorRange
from tasker.state.template_model import Backoff, StepDefinition


class RetryFill(msgspec.Struct, frozen=True):
    """The global retry defaults a step's own `retry` block leaves to fill."""

    max_attempts: int
    backoff: str
    backoff_base_ms: int
    max_backoff_ms: int


def step_row(
    step: StepDefinition, position: int, step_uuid: UUID, defaults: RetryFill
) -> dict[str, Any]:
    """The row of one step (as JSON for `jsonb_to_recordset`)."""
    backoff: Backoff = defaults.backoff  # type: ignore[assignment]
    retry = step.retry.resolved(
        defaults.max_attempts, backoff, defaults.backoff_base_ms, defaults.max_backoff_ms
    )
    return {
        "step_uuid": str(step_uuid),
        "name": step.name,
        "position": position,
        "step_type": step.type,
        "handler": msgspec.to_builtins(step.handler),
        "retryable": retry.retryable,
        "max_attempts": retry.max_attempts,
        "backoff": retry.backoff,
        "backoff_base_ms": retry.backoff_base_ms,
        "max_backoff_ms": retry.max_backoff_ms,
        "timeout_seconds": step.timeout_seconds,
    }


def worker_names(worker: str, outcome: BatchOutcome) -> list[str]:
    """`{worker}_001`, `{worker}_002`, ...: one per batch, and one no-op worker for none."""
    return [f"{worker}_{index:03d}" for index in range(1, max(len(outcome.cursors), 1) + 1)]


def worker_inputs(outcome: BatchOutcome) -> list[dict[str, Any]]:
    """Each instance's `step_inputs`, in Tasker's BatchWorkerInputs shape."""
    cursors = outcome.cursors or (CursorRange("001", 0, 0, 0),)
    return [
        {
            "cursor": msgspec.to_builtins(cursor),
            "batch_metadata": _batch_metadata(outcome, index, len(cursors)),
            "is_no_op": outcome.no_batches,
        }
        for index, cursor in enumerate(cursors)
    ]


def _batch_metadata(outcome: BatchOutcome, index: int, total: int) -> dict[str, Any]:
    config = outcome.config
    return {
        **outcome.batch_metadata,
        "cursor_field": config.cursor_field,
        "failure_strategy": config.failure_strategy,
        "parallelism": config.parallelism,
        "batch_index": index,
        "total_batches": total,
    }


def batch_row(batch_step_uuid: UUID, outcome: BatchOutcome) -> dict[str, Any]:
    """The `step_batches` row of one batch."""
    return {
        "batch_step_uuid": str(batch_step_uuid),
        "worker_template": outcome.worker,
        "parallelism": outcome.config.parallelism,
        "failure_strategy": outcome.config.failure_strategy,
        "worker_count": max(len(outcome.cursors), 1),
    }
