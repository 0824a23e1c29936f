"""JSON shapes of the REST API (Tasker's field names), shared by server and client."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

TaskStatus = Literal[
    "pending", "initializing", "enqueuing_steps", "steps_in_process", "evaluating_results",
    "waiting_for_dependencies", "waiting_for_retry", "blocked_by_failures", "complete",
    "error", "cancelled", "resolved_manually",
]  # fmt: skip
StepAction = Literal["reset_for_retry", "resolve_manually", "complete_manually"]


class Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A request body: unknown fields are refused (a typo must not pass silently)."""


class TaskCreate(Strict, frozen=True):
    name: str
    namespace: str
    version: str = "1.0.0"
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    initiator: str | None = None
    source_system: str | None = None
    reason: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    priority: int = 0
    correlation_id: str | None = None
    idempotency_key: str | None = None


class StepUpdate(Strict, frozen=True):
    """PATCH a step: what an operator does to it, and why."""

    action_type: StepAction
    reason: str = ""
    resolved_by: str = "operator"
    # complete_manually: the result dependents will read (Tasker: completion_data).
    completion_data: Any = None


class DlqUpdate(Strict, frozen=True):
    resolution_status: Literal["pending", "manually_resolved", "permanently_failed", "cancelled"]
    resolution_notes: str = ""
    resolved_by: str = "operator"


class Step(msgspec.Struct, frozen=True):
    step_uuid: UUID
    task_uuid: UUID
    name: str
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    results: Any
    current_state: str
    dependencies_satisfied: bool
    retry_eligible: bool
    ready_for_execution: bool
    total_parents: int
    completed_parents: int
    attempts: int
    max_attempts: int
    last_failure_at: datetime | None
    next_retry_at: datetime | None
    last_attempted_at: datetime | None
    dependencies: list[str] = msgspec.field(default_factory=list)
    retryable: bool = True
    last_error: Any = None


class Task(msgspec.Struct, frozen=True):
    task_uuid: UUID
    name: str
    namespace: str
    version: str
    status: str
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    context: dict[str, Any]
    initiator: str | None
    source_system: str | None
    reason: str | None
    priority: int
    tags: list[str]
    correlation_id: str | None
    parent_correlation_id: str | None
    total_steps: int
    pending_steps: int
    in_progress_steps: int
    completed_steps: int
    failed_steps: int
    ready_steps: int
    execution_status: str
    recommended_action: str
    completion_percentage: float
    health_status: str
    steps: list[Step] = msgspec.field(default_factory=list)


class Pagination(msgspec.Struct, frozen=True):
    page: int
    per_page: int
    total_count: int
    total_pages: int
    has_next: bool
    has_previous: bool


class TaskList(msgspec.Struct, frozen=True):
    tasks: list[Task]
    pagination: Pagination


class Transition(msgspec.Struct, frozen=True):
    from_state: str | None
    to_state: str
    metadata: dict[str, Any]
    sort_key: int
    most_recent: bool
    created_at: datetime


class OperatorAction(msgspec.Struct, frozen=True):
    step_uuid: UUID | None
    action: str
    actor: str
    reason: str
    details: dict[str, Any]
    created_at: datetime


class Audit(msgspec.Struct, frozen=True):
    """A task's or step's history: every transition and operator action, oldest first."""

    task_uuid: UUID
    step_uuid: UUID | None
    transitions: list[Transition]
    operator_actions: list[OperatorAction]


class DlqEntry(msgspec.Struct, frozen=True):
    entry_uuid: UUID
    task_uuid: UUID
    reason: str
    status: str
    details: dict[str, Any]
    snapshot: dict[str, Any]
    resolved_by: str | None
    resolved_at: datetime | None
    resolution_notes: str | None
    created_at: datetime
    updated_at: datetime


class DlqList(msgspec.Struct, frozen=True):
    entries: list[DlqEntry]
    pagination: Pagination


class DlqStats(msgspec.Struct, frozen=True):
    total: int
    by_status: dict[str, int]
    by_reason: dict[str, int]


class TemplateSummary(msgspec.Struct, frozen=True):
    namespace: str
    name: str
    version: str
    description: str
    step_count: int


class TemplateList(msgspec.Struct, frozen=True):
    templates: list[TemplateSummary]


class TemplateStep(msgspec.Struct, frozen=True):
    name: str
    description: str
    handler: str
    type: str
    dependencies: list[str]
    max_attempts: int | None
    timeout_seconds: float | None
    publishes_events: list[str]


class TemplateDetail(msgspec.Struct, frozen=True):
    namespace: str
    name: str
    version: str
    description: str
    steps: list[TemplateStep]
    input_schema: dict[str, Any] | None


class Error(msgspec.Struct, frozen=True):
    """Every error: a stable `code`, a message naming the field, and details."""

    code: str
    message: str
    field: str | None = None
    details: list[str] = msgspec.field(default_factory=list)
    task_uuid: UUID | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    error: Error


class Check(msgspec.Struct, frozen=True):
    status: Literal["healthy", "unhealthy"]
    message: str = ""
    duration_ms: float = 0.0


class Health(msgspec.Struct, frozen=True):
    status: Literal["healthy", "unhealthy"]
    checks: dict[str, Check] = msgspec.field(default_factory=dict)


class QueueDepth(msgspec.Struct, frozen=True):
    queue: str
    ready: int
    in_flight: int


class WorkerInfo(msgspec.Struct, frozen=True):
    worker_id: str
    host: str
    pid: int
    namespaces: list[str]
    in_flight: int
    concurrency: int
    status: str
    last_heartbeat_at: datetime
    heartbeat_age_seconds: float
    alive: bool


class DetailedHealth(msgspec.Struct, frozen=True):
    status: Literal["healthy", "unhealthy"]
    checks: dict[str, Check]
    queues: list[QueueDepth]
    workers: list[WorkerInfo]
    circuit_breakers: dict[str, str]
    version: str
    uptime_seconds: float


class WorkerList(msgspec.Struct, frozen=True):
    workers: list[WorkerInfo]
