"""Task initialization: turn a client's request into a task, its steps and edges."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
import pykka

from tasker.actors.guarded import GuardedActor
from tasker.actors.messages import EnqueueSteps, TaskRequestReceived
from tasker.messaging.broker import Broker
from tasker.state.db import Database
from tasker.state.errors import TemplateNotFoundError
from tasker.state.repository import RegisteredTemplate, StateRepository, TaskSpec

log = logging.getLogger(__name__)


class TemplateCatalog:
    """Registered templates by identity, read from the database once per process."""

    def __init__(self, repository: StateRepository) -> None:
        self._repository = repository
        self._cache: dict[tuple[str, str, str], RegisteredTemplate] = {}

    def get(self, namespace: str, name: str, version: str) -> RegisteredTemplate:
        key = (namespace, name, version)
        if key not in self._cache:
            self._cache[key] = self._repository.get_template(namespace, name, version)
        return self._cache[key]


class TaskInitializer(GuardedActor):
    """Creates each requested task in one transaction, then hands its roots to enqueueing."""

    def __init__(
        self,
        broker: Broker,
        database: Database,
        repository: StateRepository,
        enqueuer: pykka.ActorRef[Any],
    ) -> None:
        super().__init__(broker)
        self.database = database
        self.repository = repository
        self.catalog = TemplateCatalog(repository)
        self.enqueuer = enqueuer

    def handlers(self) -> dict[type[Any], Callable[[Any], None]]:
        return {TaskRequestReceived: self.initialize}

    def initialize(self, message: TaskRequestReceived) -> None:
        request = message.request
        try:
            registered = self.catalog.get(request.namespace, request.name, request.version)
        except TemplateNotFoundError as exc:
            log.error("rejected task request %s: %s", request.task_uuid, exc)
            self.broker.dead_letter(message.delivery, str(exc))
            return
        spec = msgspec.convert(msgspec.structs.asdict(request), TaskSpec, from_attributes=True)
        with self.database.transaction() as unit:
            creation = self.repository.create_task(unit, registered, spec)
            self.broker.ack(message.delivery, within=unit)
        if not creation.created:
            log.info(
                "task %s already exists (%s); request not applied twice",
                request.task_uuid,
                creation.status,
            )
            return
        log.info("task %s created from %s", request.task_uuid, registered.template.identity)
        if creation.ready_steps:
            self.enqueuer.tell(EnqueueSteps(creation.ready_steps))
