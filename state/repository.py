"""The state repository: one typed method per domain operation on tasks and steps.

Hot-path operations are single calls of the server-side functions in `state/migrations/`
(one round trip each) and run inside a caller's unit of work, so a broker can join the same
transaction. SQL text lives in `state/queries.py`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg.types.json import Jsonb

from tasker.ids import new_id
from tasker.state import queries
from tasker.state.db import Database, UnitOfWork
from tasker.state.dynamic_creation import CreationPlan, TaskSteps
from tasker.state.dynamic_rows import RetryFill, step_row
from tasker.state.errors import (
    IllegalTransitionError,
    StaleTransitionError,
    TaskNotFoundError,
    TemplateNotFoundError,
)
from tasker.state.records import (
    ClaimedStep,
    Dispatch,
    FinalizeOutcome,
    HopOutcome,
    ResultInput,
    ResultOutcome,
    TaskCreation,
    TaskView,
    TransitionRecord,
    WorkerHeartbeat,
    WorkerRecord,
)
from tasker.state.states import StepState, TaskState, step_sources, task_sources
from tasker.state.templates import TaskTemplate, template_from_json, template_to_json

# Retry jitter draws from its own generator: the global one belongs to the application
# (and to tests that replay it).
_JITTER = random.Random()
# Documents for the hot statements are encoded by msgspec: psycopg's default (the json
# module) took about seven times as long (19 against 3 us for a 4-step task's creation).
_encode_json = msgspec.json.Encoder().encode
_TASK_VIEW = msgspec.json.Decoder(TaskView)


class RetryDefaults(msgspec.Struct, frozen=True):
    """Global retry settings that fill whatever a template's `retry` block leaves out."""

    max_attempts: int = 3
    backoff: str = "exponential"
    backoff_base_ms: int = 1000
    max_backoff_ms: int = 30000
    jitter: float = 0.1


class StalenessLimits(msgspec.Struct, frozen=True):
    """How long a task may sit in one state before it is declared stale (minutes)."""

    dependencies_minutes: float = 60.0
    retry_minutes: float = 30.0
    in_process_minutes: float = 30.0


class RegisteredTemplate(msgspec.Struct, frozen=True):
    template_uuid: UUID
    template: TaskTemplate


class TaskSpec(msgspec.Struct, frozen=True):
    """What a client asks for when it creates a task."""

    task_uuid: UUID
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    initiator: str | None = None
    source_system: str | None = None
    reason: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    priority: int = 0
    correlation_id: str | None = None
    idempotency_key: str | None = None


class StateRepository:
    """Reads and guarded writes of templates, tasks and steps."""

    def __init__(self, database: Database, retry_defaults: RetryDefaults | None = None) -> None:
        self.database = database
        self.retry_defaults = retry_defaults or RetryDefaults()

    # Templates ---------------------------------------------------------------------------

    def register_template(self, template: TaskTemplate) -> UUID:
        """Store (or replace) a template under its namespace, name and version."""
        with self.database.transaction() as unit:
            rows = unit.execute_sql(
                queries.UPSERT_TEMPLATE,
                (
                    new_id(),
                    template.namespace_name,
                    template.name,
                    template.version,
                    template_to_json(template).decode(),
                ),
            )
        return UUID(str(rows[0][0]))

    def get_template(self, namespace: str, name: str, version: str) -> RegisteredTemplate:
        with self.database.transaction() as unit:
            rows = unit.execute_sql(queries.GET_TEMPLATE, (namespace, name, version))
        if not rows:
            raise TemplateNotFoundError(namespace, name, version)
        return RegisteredTemplate(rows[0][0], template_from_json(rows[0][1].encode()))

    def list_templates(self) -> list[tuple[str, str, str]]:
        with self.database.transaction() as unit:
            rows = unit.execute_sql(queries.LIST_TEMPLATES)
        return [(row[0], row[1], row[2]) for row in rows]

    # Pipeline ------------------------------------------------------------------------------

    def create_task(
        self,
        unit: UnitOfWork,
        registered: RegisteredTemplate,
        spec: TaskSpec,
        *,
        identity_hash: str | None = None,
        trace_context: Mapping[str, str] | None = None,
    ) -> TaskCreation:
        """Create a task with its steps and edges.

        A repeated task_uuid, or an identity_hash an existing task already has, creates
        nothing: the result then carries the existing task's id with `created` False.
        `trace_context` (W3C) is stored with the task: later work on it joins that trace.
        """
        template = registered.template
        task = {
            **msgspec.structs.asdict(spec),
            "task_uuid": str(spec.task_uuid),
            "template_uuid": str(registered.template_uuid),
            "namespace": template.namespace_name,
            "name": template.name,
            "version": template.version,
            "identity_hash": identity_hash,
            "trace_context": dict(trace_context) if trace_context else None,
        }
        # Dynamic steps (issue 10): only the steps that exist from the start; those after a
        # decision or batchable step are created when its outcome determines them.
        initial = CreationPlan.build(template, TaskSteps(), self._retry_fill())
        documents = (task, initial.steps, initial.edges)  # msgspec: see _encode_json
        row = unit.execute_sql(
            queries.CREATE_TASK, tuple(Jsonb(d, dumps=_encode_json) for d in documents)
        )[0]
        return TaskCreation(row[1], row[0], row[2], tuple(row[3]))

    def _step_row(
        self, template: TaskTemplate, index: int, step_ids: dict[str, UUID]
    ) -> dict[str, Any]:
        step = template.steps[index]
        return step_row(step, index, step_ids[step.name], self._retry_fill())

    def _retry_fill(self) -> RetryFill:
        defaults = self.retry_defaults
        return RetryFill(
            defaults.max_attempts,
            defaults.backoff,
            defaults.backoff_base_ms,
            defaults.max_backoff_ms,
        )

    def claim_steps(
        self, unit: UnitOfWork, step_uuids: Sequence[UUID], *, published: bool = True
    ) -> list[ClaimedStep]:
        """Move the given steps that are still ready to `enqueued`, counting the attempt.

        `published=False` when the step messages go out after commit (non-transactional
        broker): `mark_published` then records the confirm, and until it does the step
        counts as possibly lost (see `take_unpublished_steps`).
        """
        rows = unit.execute_sql(queries.CLAIM_STEPS, (list(step_uuids), published))
        return [ClaimedStep(*row) for row in rows]

    def mark_published(self, dispatches: Sequence[Dispatch]) -> None:
        """Record that these dispatches' messages (step, fence) are confirmed on the broker."""
        if not dispatches:
            return
        steps, fences = zip(*dispatches, strict=True)
        with self.database.transaction() as unit:
            unit.execute_sql(queries.MARK_PUBLISHED, (list(steps), list(fences)))

    def take_unpublished_steps(
        self, older_than_seconds: float, limit: int = 500
    ) -> list[ClaimedStep]:
        """Enqueued steps whose publish was never confirmed, with their messages to resend."""
        with self.database.transaction() as unit:
            rows = unit.execute_sql(queries.TAKE_UNPUBLISHED_STEPS, (older_than_seconds, limit))
            step_uuids = [row[0] for row in rows]
            if not step_uuids:
                return []
            payloads = unit.execute_sql(queries.STEP_PAYLOADS, (step_uuids,))
        return [ClaimedStep(*row) for row in payloads]

    def apply_step_result(
        self,
        unit: UnitOfWork,
        *,
        step_uuid: UUID,
        fence: int,
        success: bool,
        result: Any,
        error: dict[str, Any] | None,
        started_at: datetime,
        finished_at: datetime,
        worker_id: str,
    ) -> ResultOutcome:
        """Apply one attempt's outcome (once); report newly ready steps and what's next."""
        args = (step_uuid, fence, success, result, error, started_at, finished_at, worker_id)
        return self._apply(unit, queries.APPLY_STEP_RESULT, args)

    def apply_plain_step_result(
        self,
        unit: UnitOfWork,
        *,
        step_uuid: UUID,
        fence: int,
        success: bool,
        result: Any,
        error: dict[str, Any] | None,
        started_at: datetime,
        finished_at: datetime,
        worker_id: str,
    ) -> ResultOutcome | None:
        """`apply_step_result` for a plain step; None (nothing changed) when the step is a
        decision or batchable step reporting success, or a batch worker: their outcome
        needs a closer look first (see `state.dynamic`)."""
        args = (step_uuid, fence, success, result, error, started_at, finished_at, worker_id)
        outcome = self._apply(unit, queries.APPLY_PLAIN_STEP_RESULT, args)
        return None if outcome.outcome == "dynamic" else outcome

    def _apply(
        self,
        unit: UnitOfWork,
        query: str,
        attempt: tuple[UUID, int, bool, Any, dict[str, Any] | None, datetime, datetime, str],
    ) -> ResultOutcome:
        step_uuid, fence, success, result, error, started_at, finished_at, worker_id = attempt
        params = (
            step_uuid,
            fence,
            success,
            Jsonb(result),
            Jsonb(error) if error is not None else None,
            started_at,
            finished_at,
            worker_id,
            self.retry_defaults.jitter,
            _JITTER.random(),
        )
        row = unit.execute_sql(query, params)[0]
        return ResultOutcome(row[0], row[1], row[2], row[3], tuple(row[4]), row[5], row[6])

    def claim_and_send(
        self, step_uuids: Sequence[UUID], trace_context: Mapping[str, str]
    ) -> list[tuple[str, int]]:
        """On PGMQ, claim the steps still ready and send their messages in one statement
        (migration 0012); how many were sent to each namespace."""
        params = (list(step_uuids), Jsonb(dict(trace_context)))
        return [(row[0], row[1]) for row in self.database.statement(queries.CLAIM_AND_SEND, params)]

    def apply_results_and_dispatch(
        self, source_queue: str | None, results: Sequence[ResultInput]
    ) -> list[HopOutcome]:
        """The hop of plain steps' results in one statement (migration 0012): apply them in
        the order given (sort by task: lock order), claim the steps they made ready and
        build their messages, finish the tasks they finished. With `source_queue` (PGMQ)
        the messages are sent and the results deleted in the same statement; without, the
        messages come back for the caller to publish. A result whose step is not plain
        comes back `dynamic`, untouched."""
        # One JSON document (migration 0015): msgspec encodes it in one call, where
        # psycopg converted an array per field element by element.
        rows = [
            {**msgspec.structs.asdict(r), "spread": _JITTER.random(), "entry": new_id()}
            for r in results
        ]
        params = (source_queue, self.retry_defaults.jitter, Jsonb(rows, dumps=_encode_json))
        return [
            _hop_outcome(row)
            for row in self.database.statement(queries.APPLY_RESULTS_AND_DISPATCH, params)
        ]

    def finalize_task(self, unit: UnitOfWork, task_uuid: UUID) -> FinalizeOutcome:
        """Complete a task whose steps are all done, or fail one blocked by failures."""
        row = unit.execute_sql(queries.FINALIZE_TASK, (task_uuid, new_id()))[0]
        return FinalizeOutcome(task_uuid, row[0], row[1])

    def due_retry_steps(self, limit: int = 500) -> list[UUID]:
        """Steps whose backoff has elapsed, oldest first."""
        with self.database.transaction() as unit:
            return [row[0] for row in unit.execute_sql(queries.DUE_RETRY_STEPS, (limit,))]

    def next_retry_at(self) -> datetime | None:
        """When the earliest waiting retry falls due (None when nothing waits)."""
        with self.database.transaction() as unit:
            return unit.execute_sql(queries.NEXT_RETRY_AT)[0][0]  # type: ignore[no-any-return]

    def unfinished_tasks_needing_attention(
        self, older_than_seconds: float, limit: int = 500
    ) -> list[tuple[UUID, str, dict[str, str] | None]]:
        """Active tasks left mid-pipeline (e.g. by a crash): ready work or finalization;
        each with its status and stored trace context."""
        with self.database.transaction() as unit:
            rows = unit.execute_sql(queries.TASKS_NEEDING_ATTENTION, (older_than_seconds, limit))
        return [(row[0], row[1], row[2]) for row in rows]

    def ready_steps_of_tasks(self, task_uuids: Sequence[UUID]) -> list[UUID]:
        """The steps of these tasks that could run now, in one query."""
        with self.database.transaction() as unit:
            rows = unit.execute_sql(queries.READY_STEPS_OF_TASKS, (list(task_uuids),))
        return [row[0] for row in rows]

    def fail_stale_tasks(self, limits: StalenessLimits, limit: int = 100) -> list[UUID]:
        """Move tasks stuck beyond their limits to error, each with a DLQ entry."""
        with self.database.transaction() as unit:
            stale = unit.execute_sql(
                queries.STALE_TASKS,
                (limits.dependencies_minutes, limits.retry_minutes, limits.in_process_minutes,
                 limit),
            )  # fmt: skip
        failed = []
        for task_uuid, status, minutes in stale:
            details = {"stuck_in": status, "stuck_minutes": round(minutes, 1)}
            with self.database.transaction() as unit:
                row = unit.execute_sql(
                    queries.FAIL_STALE_TASK, (task_uuid, status, new_id(), Jsonb(details))
                )
            if row[0][0]:
                failed.append(task_uuid)
        return failed

    def transition_task(
        self, unit: UnitOfWork, task_uuid: UUID, target: TaskState, **metadata: Any
    ) -> TaskState:
        """Move a task to `target` from any state the table allows; return the old state."""
        expected = task_sources(target)
        row = unit.execute_sql(
            queries.TRANSITION_TASK, (task_uuid, sorted(expected), target.value, Jsonb(metadata))
        )[0]
        return TaskState(self._checked("task", task_uuid, row, expected, target.value))

    def transition_step(
        self,
        unit: UnitOfWork,
        step_uuid: UUID,
        target: StepState,
        *,
        expected: frozenset[StepState] | None = None,
        **metadata: Any,
    ) -> StepState:
        """Move a step to `target` (from `expected`, default: all allowed sources)."""
        allowed = step_sources(target)
        sources = allowed if expected is None else expected
        if not sources <= allowed:
            illegal = sorted(sources - allowed)[0]
            raise IllegalTransitionError("step", step_uuid, illegal.value, target.value)
        row = unit.execute_sql(
            queries.TRANSITION_STEP, (step_uuid, sorted(sources), target.value, Jsonb(metadata))
        )[0]
        return StepState(self._checked("step", step_uuid, row, sources, target.value))

    @staticmethod
    def _checked(
        kind: str, uuid: UUID, row: tuple[Any, ...], expected: frozenset[Any], target: str
    ) -> str:
        applied, actual = row
        if not applied:
            raise StaleTransitionError(kind, uuid, frozenset(map(str, expected)), actual, target)
        return str(actual)

    # Workers -------------------------------------------------------------------------------

    def record_worker_heartbeat(self, unit: UnitOfWork, heartbeat: WorkerHeartbeat) -> bool:
        """Keep `heartbeat` if it is the worker's newest (by `sent_at`); whether it was."""
        beat = heartbeat
        rows = unit.execute_sql(
            queries.RECORD_WORKER_HEARTBEAT,
            (
                beat.worker_id,
                beat.host,
                beat.pid,
                beat.namespaces,
                beat.in_flight,
                beat.concurrency,
                beat.status,
                beat.started_at,
                beat.sent_at,
                beat.interval_seconds,
            ),
        )
        return bool(rows)

    def prune_workers(self, unit: UnitOfWork, older_than_seconds: float) -> list[str]:
        """Forget workers not heard from for `older_than_seconds`; the ids forgotten."""
        rows = unit.execute_sql(queries.PRUNE_WORKERS, (older_than_seconds,))
        return [row[0] for row in rows]

    def list_workers(self) -> list[WorkerRecord]:
        """Every worker ever heard from, with its latest heartbeat and liveness."""
        with self.database.transaction() as unit:
            rows = unit.execute_sql(queries.LIST_WORKERS)
        return [WorkerRecord(*row) for row in rows]

    # Reads ---------------------------------------------------------------------------------

    def get_task(self, task_uuid: UUID) -> TaskView:
        with self.database.transaction() as unit:
            return self.task_view(unit, task_uuid)

    def task_view(self, unit: UnitOfWork, task_uuid: UUID) -> TaskView:
        """The task with its steps as `unit` sees it (e.g. right after creating it)."""
        rows = unit.execute_sql(queries.TASK_VIEW_DOCUMENT, (task_uuid,))
        if not rows:
            raise TaskNotFoundError(task_uuid)
        return _TASK_VIEW.decode(rows[0][0])

    def step_transitions(self, step_uuid: UUID) -> list[TransitionRecord]:
        with self.database.transaction() as unit:
            rows = unit.execute_sql(queries.STEP_TRANSITIONS, (step_uuid,))
        return [TransitionRecord(*row) for row in rows]

    def task_transitions(self, task_uuid: UUID) -> list[TransitionRecord]:
        with self.database.transaction() as unit:
            rows = unit.execute_sql(queries.TASK_TRANSITIONS, (task_uuid,))
        return [TransitionRecord(*row) for row in rows]


def _hop_outcome(row: tuple[Any, ...]) -> HopOutcome:
    outcome = ResultOutcome(row[0], row[1], row[2], row[3], tuple(row[4]), row[5], row[6])
    finished = None if row[9] is None else FinalizeOutcome(row[1], row[9], row[10])
    dispatches = tuple(zip(row[11], row[12], strict=True))
    return HopOutcome(outcome, row[7], row[8], finished, dispatches, tuple(row[13]))
