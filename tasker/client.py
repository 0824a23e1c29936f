"""The Python client applications (and the CLI) use to create tasks and wait for them.

It submits task requests through the broker, like any client, and reads task state from
PostgreSQL, the source of truth. Completion is announced with NOTIFY, so waiting costs no
polling on the hot path (a slow poll only refreshes progress and covers a lost notice).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from tasker.config import Config
from tasker.ids import new_id
from tasker.messaging.backends import broker_from_config
from tasker.messaging.broker import Broker
from tasker.messaging.messages import ORCHESTRATION_TASK_REQUESTS_QUEUE, TaskRequestMessage, encode
from tasker.state.admission import check_request
from tasker.state.db import Database, connect
from tasker.state.errors import TaskNotFoundError
from tasker.state.records import TaskView
from tasker.state.repository import StateRepository
from tasker.state.states import TERMINAL_TASK_STATES

FINISHED_CHANNEL = "tasker_task_finished"


class TaskWaitTimeoutError(TimeoutError):
    def __init__(self, task_uuid: UUID, timeout: float, status: str) -> None:
        super().__init__(f"task {task_uuid} still {status!r} after {timeout:.1f}s")
        self.task_uuid = task_uuid


class TaskerClient:
    def __init__(self, config: Config, *, broker: Broker | None = None) -> None:
        self.config = config
        self.database = Database(config.database_url, min_size=1, max_size=2)
        self.repository = StateRepository(self.database)
        self.broker = broker or broker_from_config(config)

    def create_task(
        self, namespace: str, name: str, version: str, context: dict[str, Any], **fields: Any
    ) -> UUID:
        """Submit a task request; returns the task's id.

        The request is checked here first (registered template, context size, input_schema),
        so a bad one fails at once with the reason instead of in the dead-letter queue.
        """
        registered = self.repository.get_template(namespace, name, version)
        check_request(
            registered.template,
            context,
            idempotency_key=fields.get("idempotency_key"),
            max_context_bytes=self.config.max_context_bytes,
        )
        request = TaskRequestMessage(
            task_uuid=new_id(),
            namespace=namespace,
            name=name,
            version=version,
            context=context,
            **fields,
        )
        self.broker.ensure_queue(ORCHESTRATION_TASK_REQUESTS_QUEUE)
        self.broker.send(ORCHESTRATION_TASK_REQUESTS_QUEUE, encode(request))
        return request.task_uuid

    def get_task(self, task_uuid: UUID) -> TaskView:
        return self.repository.get_task(task_uuid)

    def wait(
        self,
        task_uuid: UUID,
        *,
        timeout: float = 60.0,
        on_progress: Callable[[TaskView], None] | None = None,
        progress_interval: float = 0.5,
    ) -> TaskView:
        """Block until the task reaches a terminal state; report progress while waiting."""
        deadline = time.monotonic() + timeout
        with connect(self.config.database_url) as listener:
            listener.execute(f"LISTEN {FINISHED_CHANNEL}")
            while True:
                view = self._current(task_uuid)
                if view is not None and on_progress is not None:
                    on_progress(view)
                if view is not None and view.status in TERMINAL_TASK_STATES:
                    return view
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    status = view.status if view else "not created"
                    raise TaskWaitTimeoutError(task_uuid, timeout, status)
                _await_notice(listener, str(task_uuid), min(remaining, progress_interval))

    def _current(self, task_uuid: UUID) -> TaskView | None:
        try:
            return self.repository.get_task(task_uuid)
        except TaskNotFoundError:
            return None  # not created yet: the orchestrator has not read the request

    def close(self) -> None:
        self.broker.close()
        self.database.close()


def _await_notice(listener: Any, task_id: str, timeout: float) -> None:
    for notice in listener.notifies(timeout=timeout):
        if notice.payload.startswith(task_id):
            return
