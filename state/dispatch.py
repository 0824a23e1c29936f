"""Claiming steps for dispatch, with what only some steps carry: inputs and a checkpoint.

`claim_for_dispatch` is the claim the enqueuer makes (one call, one round trip): the steps
still ready, batch workers bounded by their batch's `parallelism`, workers of a
`continue_on_failure` batch claimed even once the task has a failed step; each with its
own `inputs` (a batch worker's cursor) and its last `checkpoint`, and its task's stored
trace context.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import msgspec

from tasker.state import queries
from tasker.state.db import Database, UnitOfWork
from tasker.state.records import ClaimedStep


class DispatchStep(msgspec.Struct, frozen=True):
    """A claimed step and what its message carries besides the common fields."""

    step: ClaimedStep
    inputs: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None
    # The W3C context the task was created in: its step messages continue that trace.
    trace_context: dict[str, str] | None = None


def claim_for_dispatch(
    unit: UnitOfWork, step_uuids: Sequence[UUID], *, published: bool
) -> list[DispatchStep]:
    """Claim the given steps that may run now (see the module doc)."""
    rows = unit.execute_sql(queries.CLAIM_FOR_DISPATCH, (list(step_uuids), published))
    return [DispatchStep(ClaimedStep(*row[:15]), *row[15:]) for row in rows]


def with_inputs(database: Database, steps: Sequence[ClaimedStep]) -> list[DispatchStep]:
    """`steps` (claimed earlier, e.g. to be re-published) with their inputs, checkpoint
    and trace context."""
    if not steps:
        return []
    with database.transaction() as unit:
        rows = unit.execute_sql(queries.STEP_INPUTS, ([s.step_uuid for s in steps],))
    extras = {row[0]: row[1:] for row in rows}
    return [DispatchStep(step, *extras.get(step.step_uuid, ())) for step in steps]
