"""Poison messages: the investigation record for a task whose message was dead-lettered.

When the orchestrator dead-letters a message that names an existing, unfinished task, it
opens the task's dead-letter record (reason `poison_message`, with a snapshot), at most one
pending record per task. If the message answered the step's current dispatch, that step's
outcome is lost for good: nothing will ever report it again, so the task cannot proceed.
The step is then failed (error_type `poison_message`, not retryable) and the task moved to
error at once, as the staleness detector would do much later; an operator can read the
record, fix the cause and `reset_for_retry` the step, which revives the task. A message
that answers an older dispatch (or names no step) changes no state: the task carries on.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from psycopg.types.json import Jsonb

from tasker.ids import new_id
from tasker.state.db import Database, UnitOfWork

POISON_REASON = "poison_message"
#: A finished task's outcome stands; a poison message for it is only dead-lettered.
_SETTLED = frozenset({"complete", "cancelled", "resolved_manually"})
_IN_FLIGHT = frozenset({"enqueued", "in_progress"})

_LOCK_TASK = "SELECT status FROM tasker.tasks WHERE task_uuid = %s FOR UPDATE"
_LOCK_STEP = """
SELECT state, dispatch_count FROM tasker.workflow_steps
 WHERE step_uuid = %s AND task_uuid = %s FOR UPDATE
"""
_FAIL_STEP = """
UPDATE tasker.workflow_steps SET state = 'error', last_error = %s, next_retry_at = NULL,
       last_failure_at = clock_timestamp(), transition_seq = transition_seq + 1,
       updated_at = clock_timestamp()
 WHERE step_uuid = %s AND state = %s
RETURNING transition_seq
"""
_RECORD_STEP = "SELECT tasker.record_step_transition(%s, %s, %s, 'error', %s, %s)"
_FAIL_TASK = "SELECT tasker.move_task(%s, %s, 'error', %s)"
_ANNOUNCE = "SELECT pg_notify('tasker_task_finished', %s)"
_OPEN_ENTRY = "SELECT tasker.open_dlq_entry(%s, %s, %s, %s)"


class PoisonOutcome(msgspec.Struct, frozen=True):
    """What opening a poison message's record did to its task."""

    task_uuid: UUID
    task_status: str
    entry_opened: bool
    step_failed: bool


class PoisonRecords:
    def __init__(self, database: Database) -> None:
        self.database = database

    def open(
        self,
        task_uuid: UUID,
        *,
        step_uuid: UUID | None,
        fence: int | None,
        details: dict[str, Any],
    ) -> PoisonOutcome | None:
        """Record a dead-lettered message of `task_uuid`; None if no such task exists."""
        with self.database.transaction() as unit:
            rows = unit.execute_sql(_LOCK_TASK, (task_uuid,))
            if not rows:
                return None
            status: str = rows[0][0]
            if status in _SETTLED:
                return PoisonOutcome(task_uuid, status, entry_opened=False, step_failed=False)
            meta = {"reason": POISON_REASON, **details}
            failed = step_uuid is not None and _fail_step(unit, task_uuid, step_uuid, fence, meta)
            if failed and status != "error":
                unit.execute_sql(_FAIL_TASK, (task_uuid, status, Jsonb(meta)))
                unit.execute_sql(_ANNOUNCE, (f"{task_uuid}:error",))
                status = "error"
            params = (new_id(), task_uuid, POISON_REASON, Jsonb(details))
            opened = bool(unit.execute_sql(_OPEN_ENTRY, params)[0][0])
        return PoisonOutcome(task_uuid, status, entry_opened=opened, step_failed=failed)


def _fail_step(
    unit: UnitOfWork, task_uuid: UUID, step_uuid: UUID, fence: int | None, meta: dict[str, Any]
) -> bool:
    """Fail the step if the message answered its current dispatch; whether it did."""
    rows = unit.execute_sql(_LOCK_STEP, (step_uuid, task_uuid))
    if not rows:
        return False
    state, dispatch = rows[0]
    if state not in _IN_FLIGHT or dispatch != fence:
        return False
    why = meta.get("dead_letter_reason")
    error = {
        "message": f"the result of this attempt was dead-lettered: {why}",
        "error_type": POISON_REASON,
        "retryable": False,
    }
    seq = unit.execute_sql(_FAIL_STEP, (Jsonb(error), step_uuid, state))[0][0]
    unit.execute_sql(_RECORD_STEP, (step_uuid, task_uuid, state, seq, Jsonb(meta)))
    return True
