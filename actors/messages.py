"""Messages the orchestrator's actors tell each other (frozen, typed, never shared state)."""

from __future__ import annotations

from concurrent.futures import Future
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from tasker.messaging.broker import Delivery
from tasker.messaging.messages import (
    StepResultMessage,
    TaskRequestMessage,
    WorkerHeartbeatMessage,
)
from tasker.state.records import Dispatch


class ActorMessage(msgspec.Struct, frozen=True):
    """Base of every actor message."""


class TaskRequestReceived(ActorMessage, frozen=True):
    """A client asked for a task; `delivery` is acked when the task is created."""

    delivery: Delivery
    request: TaskRequestMessage


class CreateTask(ActorMessage, frozen=True):
    """Create a task now and reply with its `TaskAdmission` (for the API): through `reply`
    when given (the message is told), else as the answer to an ask."""

    request: TaskRequestMessage
    # W3C trace context of the request this work belongs to (tasker.telemetry).
    trace_context: dict[str, str] = msgspec.field(default_factory=dict)
    reply: Future[Any] | None = None


class StepResultReceived(ActorMessage, frozen=True):
    """A worker reported an attempt; `delivery` is acked when the result is applied."""

    delivery: Delivery
    result: StepResultMessage


class StepResultsReceived(ActorMessage, frozen=True):
    """Results that arrived together: applied in one transaction when they can be."""

    results: tuple[StepResultReceived, ...]

    @property
    def deliveries(self) -> tuple[Delivery, ...]:
        return tuple(item.delivery for item in self.results)


class WorkerHeartbeatReceived(ActorMessage, frozen=True):
    """A worker announced itself; `delivery` is acked when the heartbeat is recorded."""

    delivery: Delivery
    heartbeat: WorkerHeartbeatMessage


class EnqueueSteps(ActorMessage, frozen=True):
    """These steps were found ready: claim them and send them to their workers."""

    step_uuids: tuple[UUID, ...]
    # W3C trace context of the request this work belongs to (tasker.telemetry).
    trace_context: dict[str, str] = msgspec.field(default_factory=dict)
    # The one task the steps belong to, when the sender knows it.
    task_uuid: UUID | None = None


class StepsPublished(ActorMessage, frozen=True):
    """The broker confirmed these dispatches' messages: record it (batched, off the hot path)."""

    dispatches: tuple[Dispatch, ...]


class RepublishUnconfirmed(ActorMessage, frozen=True):
    """Resend enqueued steps whose publish was not confirmed within `older_than` seconds."""

    older_than: float


class FinalizeTask(ActorMessage, frozen=True):
    """This task may be finished: complete it or fail it."""

    task_uuid: UUID
    # W3C trace context of the request this work belongs to (tasker.telemetry).
    trace_context: dict[str, str] = msgspec.field(default_factory=dict)


class RetryDue(ActorMessage, frozen=True):
    """A step waits for retry until `at`: look again for due retries then."""

    at: datetime


class Sweep(ActorMessage, frozen=True):
    """Periodic safety net: due retries and tasks left between stages (e.g. by a crash)."""
