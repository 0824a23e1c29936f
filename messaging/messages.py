"""Wire messages between clients, the orchestrator and workers.

Frozen msgspec Structs in one tagged union, so a queue can carry any of them and a decoder
built once tells them apart. New fields must get defaults (schema evolution): an older
peer then still decodes a newer message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

ORCHESTRATION_RESULTS_QUEUE = "orchestration_step_results"
ORCHESTRATION_TASK_REQUESTS_QUEUE = "orchestration_task_requests"
ORCHESTRATION_WORKER_HEARTBEATS_QUEUE = "orchestration_worker_heartbeats"
#: The broadcast channel on which the orchestrator tells every worker of a cancelled task.
CANCELLATIONS_CHANNEL = "task_cancellations"


def worker_queue(namespace: str) -> str:
    """The queue a namespace's workers consume (Tasker's name for it)."""
    return f"worker_{namespace}_queue"


class WireMessage(msgspec.Struct, frozen=True, tag_field="kind", forbid_unknown_fields=False):
    """Base of every message on a queue."""


class HandlerSpec(msgspec.Struct, frozen=True):
    """Which code runs a step: the template's `handler` block."""

    callable: str
    method: str = "call"
    initialization: dict[str, Any] = msgspec.field(default_factory=dict)


class StepMessage(WireMessage, frozen=True, tag="step"):
    """Orchestrator -> worker: run one attempt of one step.

    Everything the handler needs travels in the message, so a worker needs only the broker.
    `fence` (the step's dispatch count, never reset) identifies this dispatch: a result is
    applied only to the dispatch it answers. `attempt` is the retry counter a handler sees
    (an operator's reset starts it again at 1, so it cannot be the fence).
    """

    task_uuid: UUID
    step_uuid: UUID
    namespace: str
    task_name: str
    task_version: str
    step_name: str
    handler: HandlerSpec
    attempt: int
    max_attempts: int
    retryable: bool
    input_data: dict[str, Any]
    dependency_results: dict[str, Any] = msgspec.field(default_factory=dict)
    timeout_seconds: float | None = None
    correlation_id: str | None = None
    trace_context: dict[str, str] = msgspec.field(default_factory=dict)
    step_inputs: dict[str, Any] = msgspec.field(default_factory=dict)
    checkpoint: dict[str, Any] | None = None
    fence: int = 0
    # The step's `publishes_events` declarations (tasker.events publishes them).
    publishes_events: list[Any] = msgspec.field(default_factory=list)


class StepError(msgspec.Struct, frozen=True):
    """Why an attempt failed, as the handler (or the worker on its behalf) reported it."""

    message: str
    error_type: str = "handler_error"
    retryable: bool = True
    error_code: str | None = None
    retry_after_seconds: float | None = None
    backtrace: list[str] = msgspec.field(default_factory=list)


class StepResultMessage(WireMessage, frozen=True, tag="step_result"):
    """Worker -> orchestrator: the outcome of one attempt of one step."""

    task_uuid: UUID
    step_uuid: UUID
    attempt: int
    status: Literal["success", "failure"]
    started_at: datetime
    finished_at: datetime
    worker_id: str
    result: Any = None
    error: StepError | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    correlation_id: str | None = None
    trace_context: dict[str, str] = msgspec.field(default_factory=dict)
    fence: int = 0


class TaskRequestMessage(WireMessage, frozen=True, tag="task_request"):
    """Client -> orchestrator: create and run a task from a registered template.

    The client picks `task_uuid` (UUIDv7) so it can wait for the task without a reply queue.
    """

    task_uuid: UUID
    namespace: str
    name: str
    version: str
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    initiator: str | None = None
    source_system: str | None = None
    reason: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    priority: int = 0
    correlation_id: str | None = None
    idempotency_key: str | None = None


WorkerStatus = Literal["running", "stopping", "stopped"]


class WorkerHeartbeatMessage(WireMessage, frozen=True, tag="worker_heartbeat"):
    """Worker -> orchestrator: "I exist, and this is what I am doing" (sent periodically).

    Workers announce themselves through the broker, never PostgreSQL. `sent_at` orders
    heartbeats (a late, older one never overwrites a newer one); `interval_seconds` tells
    the reader how soon the next one is due, so it can tell a dead worker.
    """

    worker_id: str
    host: str
    pid: int
    namespaces: list[str]
    in_flight: int
    concurrency: int
    started_at: datetime
    sent_at: datetime
    status: WorkerStatus = "running"
    interval_seconds: float = 5.0


class TaskCancelled(WireMessage, frozen=True, tag="task_cancelled"):
    """Orchestrator -> every worker (a broadcast): this task was cancelled, so skip its steps.

    Only saves wasted work: a worker that misses it runs the step, and the state layer
    records that result without reviving the task.
    """

    task_uuid: UUID
    cancelled_at: datetime | None = None
    actor: str | None = None
    reason: str | None = None


AnyMessage = (
    StepMessage | StepResultMessage | TaskRequestMessage | WorkerHeartbeatMessage | TaskCancelled
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyMessage)


class UndecodableMessageError(Exception):
    """A body that is not a valid wire message; carries the decoder's reason."""


def encode(message: WireMessage) -> bytes:
    """Serialize a wire message to JSON bytes."""
    return _encoder.encode(message)


def decode(body: bytes) -> AnyMessage:
    """Parse JSON bytes into the wire message they hold, or raise UndecodableMessageError."""
    try:
        message: AnyMessage = _decoder.decode(body)
        return message
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UndecodableMessageError(str(exc)) from exc
