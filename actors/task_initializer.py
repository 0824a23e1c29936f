"""Task initialization: turn a client's request into a task, its steps and edges.

Requests arrive from the task-request queue (told) or from the API (asked, with a reply).
Both take the same path: admission (template, size, input_schema, identity), then one
transaction creating the task, then the root steps go to enqueueing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

import msgspec
import pykka

from tasker.actors.guarded import GuardedActor
from tasker.actors.messages import CreateTask, EnqueueSteps, TaskRequestReceived
from tasker.actors.step_dispatch import TemplateCatalog
from tasker.messaging.broker import Broker, Delivery
from tasker.messaging.messages import TaskRequestMessage
from tasker.state.admission import TaskRejectedError, check_request
from tasker.state.db import Database
from tasker.state.errors import TemplateNotFoundError
from tasker.state.records import TaskView
from tasker.state.repository import RegisteredTemplate, StateRepository, TaskSpec
from tasker.telemetry import metrics
from tasker.telemetry.hooks import inject, traced

log = logging.getLogger(__name__)


class TaskAdmission(msgspec.Struct, frozen=True):
    """The reply to a creation request: the task (new or existing) or why it was refused."""

    task_uuid: UUID | None
    created: bool
    status: str | None = None
    rejection: str | None = None
    problems: list[str] = msgspec.field(default_factory=list)
    template_missing: bool = False
    task: TaskView | None = None  # the new task as created (API requests only)


class TaskInitializer(GuardedActor):
    def __init__(
        self,
        broker: Broker,
        database: Database,
        repository: StateRepository,
        enqueuer: pykka.ActorRef[Any],
        *,
        max_context_bytes: int,
    ) -> None:
        super().__init__(broker)
        self.database = database
        self.repository = repository
        self.catalog = TemplateCatalog(repository)
        self.enqueuer = enqueuer
        self.max_context_bytes = max_context_bytes

    def handlers(self) -> dict[type[Any], Callable[[Any], Any]]:
        return {TaskRequestReceived: self.from_queue, CreateTask: self.from_api}

    def from_api(self, message: CreateTask) -> TaskAdmission:
        with _traced(message.request, message.trace_context):  # telemetry hook
            return self._admit(message.request, delivery=None)

    def from_queue(self, message: TaskRequestReceived) -> None:
        with _traced(message.request, None):  # telemetry hook: a trace starts here
            admission = self._admit(message.request, delivery=message.delivery)
        if admission.rejection is not None:
            # Nothing is lost: the request and the reason wait in the dead-letter queue.
            self.broker.dead_letter(message.delivery, admission.rejection)

    def _admit(self, request: TaskRequestMessage, *, delivery: Delivery | None) -> TaskAdmission:
        try:
            registered = self.catalog.get(request.namespace, request.name, request.version)
            identity = check_request(
                registered.template,
                request.context,
                idempotency_key=request.idempotency_key,
                max_context_bytes=self.max_context_bytes,
            )
        except TemplateNotFoundError as exc:
            log.warning("rejected task request %s: %s", request.task_uuid, exc)
            return TaskAdmission(None, False, rejection=str(exc), template_missing=True)
        except TaskRejectedError as exc:
            log.warning("rejected task request %s: %s", request.task_uuid, exc)
            return TaskAdmission(None, False, rejection=str(exc), problems=exc.problems)
        return self._create(registered, request, identity, delivery)

    def _create(
        self,
        registered: RegisteredTemplate,
        request: TaskRequestMessage,
        identity: str | None,
        delivery: Delivery | None,
    ) -> TaskAdmission:
        spec = msgspec.convert(msgspec.structs.asdict(request), TaskSpec)
        started = time.perf_counter()
        with self.database.transaction() as unit:
            creation = self.repository.create_task(
                unit, registered, spec, identity_hash=identity, trace_context=inject()
            )  # the initialization span's context: later work on the task joins its trace
            if delivery is not None:
                self.broker.ack(delivery, within=unit)
            # The API answers with the new task: read in this transaction, not another one.
            view = None
            if creation.created and delivery is None:
                view = self.repository.task_view(unit, creation.task_uuid)
        if not creation.created:
            log.info(
                "task request %s matches existing task %s (%s); nothing created",
                request.task_uuid,
                creation.task_uuid,
                creation.status,
            )
        else:
            metrics.task_created(request.namespace, time.perf_counter() - started)
        if creation.created and creation.ready_steps:
            self.enqueuer.tell(
                EnqueueSteps(creation.ready_steps, inject(), task_uuid=creation.task_uuid)
            )
        return TaskAdmission(creation.task_uuid, creation.created, creation.status, task=view)


def _traced(request: TaskRequestMessage, carrier: Mapping[str, str] | None) -> Any:
    """The initialization span, in the caller's trace (telemetry hook)."""
    return traced(
        "tasker.task.initialize",
        carrier,
        task_uuid=request.task_uuid,
        namespace=request.namespace,
        correlation_id=request.correlation_id,
    )
