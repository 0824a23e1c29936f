"""Finalization: complete a task whose steps are all done, or fail one blocked by failures."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tasker.actors.guarded import GuardedActor
from tasker.actors.messages import FinalizeTask
from tasker.messaging.broker import Broker
from tasker.state.db import Database
from tasker.state.records import FinalizeOutcome
from tasker.state.repository import StateRepository
from tasker.telemetry import metrics
from tasker.telemetry.hooks import traced

log = logging.getLogger(__name__)


class TaskFinalizer(GuardedActor):
    def __init__(self, broker: Broker, database: Database, repository: StateRepository) -> None:
        super().__init__(broker)
        self.database = database
        self.repository = repository

    def handlers(self) -> dict[type[Any], Callable[[Any], Any]]:
        return {FinalizeTask: self.finalize}

    def finalize(self, message: FinalizeTask) -> None:
        # telemetry hook: the trace ends in this span; log lines carry the task's id
        with traced("tasker.task.finalize", message.trace_context, task_uuid=message.task_uuid):
            with self.database.transaction() as unit:
                outcome = self.repository.finalize_task(unit, message.task_uuid)
            announce(outcome)


def announce(outcome: FinalizeOutcome) -> None:
    """Count and log a finalization once it has committed (a no-op if nothing changed)."""
    if outcome.finalized:
        metrics.task_finished(outcome.status)  # telemetry hook
        log.info("task %s finished: %s", outcome.task_uuid, outcome.status)
