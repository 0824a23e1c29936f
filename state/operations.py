"""Operator actions: fix a step (reset, resolve, complete by hand), cancel a task, read the
audit trail. Each action is one guarded call, recorded with who did it and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec
from psycopg.types.json import Jsonb

from tasker.state.db import Database, UnitOfWork
from tasker.state.errors import StaleTransitionError, TaskNotFoundError
from tasker.state.states import StepState, step_sources

StepAction = Literal["reset_for_retry", "resolve_manually", "complete_manually"]

_TARGETS: dict[str, StepState] = {
    "reset_for_retry": StepState.PENDING,
    "resolve_manually": StepState.RESOLVED_MANUALLY,
    "complete_manually": StepState.COMPLETE,
}
#: States an operator may act from: the table's sources, less what the pipeline owns
#: (a step handed back for orchestration is about to be decided by the result processor).
_PIPELINE_ONLY = frozenset(
    {StepState.ENQUEUED_FOR_ORCHESTRATION, StepState.ENQUEUED_AS_ERROR_FOR_ORCHESTRATION}
)


class OperatorOutcome(msgspec.Struct, frozen=True):
    """What an action changed; the orchestrator enqueues `ready_steps` and finalizes."""

    task_uuid: UUID
    step_uuid: UUID | None
    previous_state: str | None
    task_status: str | None
    ready_steps: tuple[UUID, ...] = ()
    finalize: bool = False


class AuditRecord(msgspec.Struct, frozen=True):
    task_uuid: UUID
    step_uuid: UUID | None
    action: str
    actor: str
    reason: str
    details: dict[str, Any]
    created_at: datetime


_STEP_ACTION = """
SELECT applied, previous_state, task_status, ready_steps, finalize
  FROM tasker.operator_step_action(%s, %s, %s, %s, %s, %s, %s)
"""
_CANCEL_TASK = "SELECT applied, previous_status FROM tasker.cancel_task(%s, %s, %s)"
_TRACE_CONTEXT = "SELECT tasker.task_trace_context(%s)"
_AUDIT = """
SELECT task_uuid, step_uuid, action, actor, reason, details, created_at
  FROM tasker.audit_log WHERE task_uuid = %s ORDER BY id
"""


def allowed_sources(action: StepAction) -> frozenset[StepState]:
    """The step states `action` may be applied from."""
    return step_sources(_TARGETS[action]) - _PIPELINE_ONLY


class Operations:
    def __init__(self, database: Database) -> None:
        self.database = database

    def step_action(
        self,
        task_uuid: UUID,
        step_uuid: UUID,
        action: StepAction,
        *,
        actor: str,
        reason: str,
        result: Any = None,
    ) -> OperatorOutcome:
        """Apply `action` to a step; StaleTransitionError if its state does not allow it."""
        sources = allowed_sources(action)
        params = (task_uuid, step_uuid, action, sorted(sources), Jsonb(result), actor, reason)
        with self.database.transaction() as unit:
            applied, previous, status, ready, finalize = unit.execute_sql(_STEP_ACTION, params)[0]
        if not applied:
            if status is None:
                raise TaskNotFoundError(task_uuid)
            raise StaleTransitionError(
                "step", step_uuid, frozenset(sources), previous, _TARGETS[action].value
            )
        return OperatorOutcome(task_uuid, step_uuid, previous, status, tuple(ready), finalize)

    def reset_step_for_retry(
        self, task_uuid: UUID, step_uuid: UUID, *, actor: str, reason: str
    ) -> OperatorOutcome:
        """Give a failed step a fresh set of attempts (attempts back to 0)."""
        return self.step_action(task_uuid, step_uuid, "reset_for_retry", actor=actor, reason=reason)

    def resolve_step_manually(
        self, task_uuid: UUID, step_uuid: UUID, *, actor: str, reason: str
    ) -> OperatorOutcome:
        """Mark a step resolved without a result; its dependents may run."""
        return self.step_action(
            task_uuid, step_uuid, "resolve_manually", actor=actor, reason=reason
        )

    def complete_step_manually(
        self, task_uuid: UUID, step_uuid: UUID, result: Any, *, actor: str, reason: str
    ) -> OperatorOutcome:
        """Complete a step with `result`, which its dependents then consume."""
        return self.step_action(
            task_uuid, step_uuid, "complete_manually", actor=actor, reason=reason, result=result
        )

    def cancel_task(self, task_uuid: UUID, *, actor: str, reason: str) -> OperatorOutcome:
        """Cancel a task and its waiting steps; a finished task cannot be cancelled."""
        with self.database.transaction() as unit:
            return self.cancel_task_in(unit, task_uuid, actor=actor, reason=reason)

    @staticmethod
    def cancel_task_in(
        unit: UnitOfWork, task_uuid: UUID, *, actor: str, reason: str
    ) -> OperatorOutcome:
        """`cancel_task` in the caller's transaction (to announce it in the same commit)."""
        applied, previous = unit.execute_sql(_CANCEL_TASK, (task_uuid, actor, reason))[0]
        if previous is None:
            raise TaskNotFoundError(task_uuid)
        if not applied:
            raise StaleTransitionError(
                "task", task_uuid, frozenset({"any unfinished state"}), previous, "cancelled"
            )
        return OperatorOutcome(task_uuid, None, previous, "cancelled")

    def trace_context(self, task_uuid: UUID) -> dict[str, str] | None:
        """The W3C context the task was created in: an action on it joins that trace."""
        with self.database.transaction() as unit:
            found: dict[str, str] | None = unit.execute_sql(_TRACE_CONTEXT, (task_uuid,))[0][0]
        return found

    def audit(self, task_uuid: UUID) -> list[AuditRecord]:
        """Every operator action on a task and its steps, oldest first."""
        with self.database.transaction() as unit:
            rows = unit.execute_sql(_AUDIT, (task_uuid,))
        return [AuditRecord(*row) for row in rows]
