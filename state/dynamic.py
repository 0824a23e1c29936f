"""Dynamic steps at runtime: apply decision and batch outcomes, batch slots, checkpoints.

The result processor calls, in the one transaction that applies a step result:
1. `inspect` before applying: what the step is; for a decision or batchable step that
   succeeded, its outcome checked against the template (a bad one becomes a permanent
   failure of the step, so nothing half-made is ever applied);
2. `repository.apply_step_result` (or `checkpoint` for a batch worker's yield);
3. `follow_up`: create the steps the outcome determined (with their edges and batches,
   atomically with the result), free a batch slot, isolate a failed worker; the ready
   steps and the task's state it returns replace the ones from step 2.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg.types.json import Jsonb

from tasker.state import queries
from tasker.state.db import UnitOfWork
from tasker.state.dynamic_creation import CreationPlan, TaskSteps
from tasker.state.dynamic_outcomes import (
    BatchOutcome,
    DecisionOutcome,
    OutcomeError,
    batch_outcome,
    decision_outcome,
)
from tasker.state.dynamic_rows import RetryFill
from tasker.state.records import ResultOutcome
from tasker.state.repository import StateRepository
from tasker.state.templates import TaskTemplate, template_from_json

_TERMINAL = frozenset({"complete", "error", "cancelled", "resolved_manually"})
_FOLLOWED = frozenset({"applied", "checkpointed"})


class StepKind(msgspec.Struct, frozen=True):
    """A result's step, as far as dynamic steps care; `problem` makes the result a failure."""

    step_uuid: UUID
    task_uuid: UUID
    name: str
    step_type: str
    batch_step_uuid: UUID | None = None
    template: TaskTemplate | None = None
    outcome: DecisionOutcome | BatchOutcome | None = None
    problem: str | None = None

    def failure(self) -> dict[str, Any]:
        """The permanent failure a bad outcome is applied as (a StepError as data)."""
        return {
            "message": self.problem,
            "error_type": OutcomeError.error_type,
            "retryable": False,
            "error_code": None,
            "retry_after_seconds": None,
            "backtrace": [],
        }


class DynamicSteps:
    """Dynamic-step operations inside the result processor's unit of work."""

    def __init__(self, repository: StateRepository) -> None:
        self.repository = repository
        defaults = repository.retry_defaults
        self.fill = RetryFill(
            defaults.max_attempts,
            defaults.backoff,
            defaults.backoff_base_ms,
            defaults.max_backoff_ms,
        )
        self._templates: dict[tuple[UUID, datetime], TaskTemplate] = {}

    def inspect(self, unit: UnitOfWork, step_uuid: UUID, *, success: bool, result: Any) -> StepKind:
        """What the step is; a decision or batch outcome checked (one indexed read)."""
        rows = unit.execute_sql(queries.INSPECT_STEP, (step_uuid,))
        if not rows:
            return StepKind(step_uuid, step_uuid, "", "unknown")
        task_uuid, name, step_type, batch, template_uuid, updated_at = rows[0]
        kind = StepKind(step_uuid, task_uuid, name, step_type, batch)
        if not success or step_type not in ("decision", "batchable"):
            return kind
        template = self._template(unit, template_uuid, updated_at)
        try:
            outcome = _checked_outcome(template, name, step_type, result)
        except OutcomeError as exc:
            return msgspec.structs.replace(kind, template=template, problem=str(exc))
        return msgspec.structs.replace(kind, template=template, outcome=outcome)

    def follow_up(self, unit: UnitOfWork, kind: StepKind, outcome: ResultOutcome) -> ResultOutcome:
        """Apply what the step's outcome determined; the merged outcome of the result."""
        if outcome.outcome not in _FOLLOWED or outcome.task_status in _TERMINAL:
            return outcome
        if kind.outcome is not None and outcome.step_state == "complete":
            outcome = self._create(unit, kind, outcome)
        if kind.batch_step_uuid is not None:
            outcome = self._after_worker(unit, kind.step_uuid, outcome)
        return outcome

    def checkpoint(
        self,
        unit: UnitOfWork,
        *,
        step_uuid: UUID,
        fence: int,
        checkpoint: dict[str, Any],
        started_at: datetime,
        finished_at: datetime,
        worker_id: str,
    ) -> ResultOutcome:
        """Save a yielded checkpoint; the step goes back to pending (ready at once)."""
        row = unit.execute_sql(
            queries.CHECKPOINT_STEP,
            (step_uuid, fence, Jsonb(checkpoint), started_at, finished_at, worker_id),
        )[0]
        return ResultOutcome(row[0], row[1], row[2], row[3], tuple(row[4]), None, row[5])

    def _template(self, unit: UnitOfWork, template_uuid: UUID, at: datetime) -> TaskTemplate:
        key = (template_uuid, at)
        if key not in self._templates:
            definition = unit.execute_sql(queries.TEMPLATE_DEFINITION, (template_uuid,))[0][0]
            self._templates[key] = template_from_json(definition.encode())
        return self._templates[key]

    def _create(self, unit: UnitOfWork, kind: StepKind, outcome: ResultOutcome) -> ResultOutcome:
        assert kind.template is not None  # set together with the outcome
        rows = unit.execute_sql(queries.TASK_STEP_FATES, (kind.task_uuid,))
        task = TaskSteps.from_rows(rows)
        plan = CreationPlan.build(kind.template, task, self.fill, {kind.name: kind.outcome})
        if plan.empty:
            return outcome
        status, ready, finalize = unit.execute_sql(
            queries.ADD_DYNAMIC_STEPS,
            (kind.task_uuid, Jsonb(plan.steps), Jsonb(plan.edges), Jsonb(plan.batches)),
        )[0]
        return msgspec.structs.replace(
            outcome,
            task_status=status,
            ready_steps=_union(outcome.ready_steps, ready),
            finalize=finalize,
        )

    def _after_worker(
        self, unit: UnitOfWork, step_uuid: UUID, outcome: ResultOutcome
    ) -> ResultOutcome:
        status, ready, finalize, override = unit.execute_sql(
            queries.AFTER_BATCH_WORKER_RESULT, (step_uuid,)
        )[0]
        merged = msgspec.structs.replace(outcome, ready_steps=_union(outcome.ready_steps, ready))
        if override:
            merged = msgspec.structs.replace(merged, task_status=status, finalize=finalize)
        return merged


def _checked_outcome(
    template: TaskTemplate, name: str, step_type: str, result: Any
) -> DecisionOutcome | BatchOutcome:
    if step_type == "decision":
        return decision_outcome(template, name, result)
    return batch_outcome(template, name, result)


def _union(first: Iterable[UUID], second: Iterable[UUID]) -> tuple[UUID, ...]:
    return tuple(dict.fromkeys([*first, *second]))
