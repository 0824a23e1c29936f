"""Typed records the repository returns: what the pipeline and the CLI read from state."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec


class TaskCreation(msgspec.Struct, frozen=True):
    """Outcome of creating a task: `created` is False when the task already existed."""

    task_uuid: UUID
    created: bool
    status: str
    ready_steps: tuple[UUID, ...]


#: One dispatch of a step: its uuid and fence (its dispatch count when it was claimed).
Dispatch = tuple[UUID, int]


class ClaimedStep(msgspec.Struct, frozen=True):
    """A step just moved to `enqueued`, with everything a worker needs to run it."""

    step_uuid: UUID
    task_uuid: UUID
    name: str
    handler: dict[str, Any]
    attempt: int
    max_attempts: int
    retryable: bool
    timeout_seconds: float | None
    namespace: str
    task_name: str
    task_version: str
    context: dict[str, Any]
    correlation_id: str | None
    dependency_results: dict[str, Any]
    fence: int

    @property
    def dispatch(self) -> Dispatch:
        return (self.step_uuid, self.fence)


class ResultOutcome(msgspec.Struct, frozen=True):
    """What applying a step result did.

    `outcome` is `applied`, `duplicate` (this attempt was already applied), `stale` (the
    result answers an older attempt) or `unknown_step`; only `applied` changed anything.
    """

    outcome: str
    task_uuid: UUID | None
    step_state: str | None
    task_status: str | None
    ready_steps: tuple[UUID, ...]
    next_retry_at: datetime | None
    finalize: bool


class FinalizeOutcome(msgspec.Struct, frozen=True):
    task_uuid: UUID
    finalized: bool
    status: str | None


class ResultInput(msgspec.Struct, frozen=True):
    """One worker result for `apply_results_and_dispatch`: the attempt's outcome, the
    PGMQ message that carried it (None on another broker), and the trace its
    consequences continue."""

    message_id: int | None
    step_uuid: UUID
    fence: int
    success: bool
    result: Any
    error: dict[str, Any] | None
    started_at: datetime
    finished_at: datetime
    worker_id: str
    trace_context: dict[str, str]


class HopOutcome(msgspec.Struct, frozen=True):
    """What applying one result did: the steps it claimed (`sent` of them, in `namespace`)
    and, when it finished its task, the finalization. `outcome.outcome` is `dynamic` when
    nothing was done. Off PGMQ, `messages` holds the claimed steps' messages to publish
    and `dispatches` what their publish confirms record."""

    outcome: ResultOutcome
    sent: int
    namespace: str | None
    finalization: FinalizeOutcome | None
    dispatches: tuple[Dispatch, ...] = ()
    messages: tuple[str, ...] = ()


class StepView(msgspec.Struct, frozen=True):
    """A step as operators and clients see it (Tasker's field names)."""

    step_uuid: UUID
    task_uuid: UUID
    name: str
    current_state: str
    attempts: int
    max_attempts: int
    retryable: bool
    results: Any
    last_error: Any
    dependencies: list[str]
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    last_attempted_at: datetime | None
    last_failure_at: datetime | None
    next_retry_at: datetime | None


class TaskView(msgspec.Struct, frozen=True):
    """A task with its step counts and steps (Tasker's field names)."""

    task_uuid: UUID
    namespace: str
    name: str
    version: str
    status: str
    context: dict[str, Any]
    initiator: str | None
    source_system: str | None
    reason: str | None
    priority: int
    tags: list[str]
    correlation_id: str | None
    total_steps: int
    pending_steps: int
    in_progress_steps: int
    completed_steps: int
    failed_steps: int
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    steps: list[StepView]

    @property
    def completion_percentage(self) -> float:
        return 100.0 * self.completed_steps / self.total_steps if self.total_steps else 100.0


class TransitionRecord(msgspec.Struct, frozen=True):
    from_state: str | None
    to_state: str
    metadata: dict[str, Any]
    sort_key: int
    most_recent: bool
    created_at: datetime


class WorkerHeartbeat(msgspec.Struct, frozen=True):
    """What a worker said about itself in one heartbeat (the broker message, as state)."""

    worker_id: str
    host: str
    pid: int
    namespaces: list[str]
    in_flight: int
    concurrency: int
    status: str
    started_at: datetime
    sent_at: datetime
    interval_seconds: float


class WorkerRecord(msgspec.Struct, frozen=True):
    """A worker as operators see it: its latest heartbeat and whether it is alive.

    `alive` is false once the worker said it stopped, or after three heartbeat intervals
    without news (it crashed, hangs, or lost the broker). The age is by the database clock.
    """

    worker_id: str
    host: str
    pid: int
    namespaces: list[str]
    in_flight: int
    concurrency: int
    status: str
    started_at: datetime
    last_heartbeat_at: datetime
    heartbeat_interval_seconds: float
    heartbeat_age_seconds: float
    alive: bool
