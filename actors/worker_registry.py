"""The worker registry: records the heartbeats workers send through the broker.

Workers never touch PostgreSQL; this actor turns their announcements into the rows of
`tasker.workers` that `tasker worker list` shows. The ack joins the write's transaction
where the broker allows it, so a heartbeat is acked only once it is recorded. About once
an hour a heartbeat's transaction also forgets workers silent for the retention period,
so the table holds recent workers, not every process that ever ran.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from tasker.actors.guarded import GuardedActor
from tasker.actors.messages import WorkerHeartbeatReceived
from tasker.messaging.broker import Broker
from tasker.messaging.messages import WorkerHeartbeatMessage
from tasker.state.db import Database, UnitOfWork
from tasker.state.records import WorkerHeartbeat
from tasker.state.repository import StateRepository

log = logging.getLogger(__name__)


#: How often silent workers are pruned at most.
PRUNE_EVERY_SECONDS = 3600.0


class WorkerRegistry(GuardedActor):
    def __init__(
        self,
        broker: Broker,
        database: Database,
        repository: StateRepository,
        *,
        retention_seconds: float = 24 * 3600.0,
    ) -> None:
        super().__init__(broker)
        self.database = database
        self.repository = repository
        self.retention_seconds = retention_seconds
        self._pruned_at = -math.inf

    def handlers(self) -> dict[type[Any], Callable[[Any], Any]]:
        return {WorkerHeartbeatReceived: self.record}

    def record(self, message: WorkerHeartbeatReceived) -> None:
        beat = message.heartbeat
        with self.database.transaction() as unit:
            newest = self.repository.record_worker_heartbeat(unit, as_state(beat))
            self._prune_if_due(unit)
            self.broker.ack(message.delivery, within=unit)
        if newest and beat.status != "running":
            log.info(
                "worker %s (pid %d on %s) is %s", beat.worker_id, beat.pid, beat.host, beat.status
            )

    def _prune_if_due(self, unit: UnitOfWork) -> None:
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        forgotten = self.repository.prune_workers(unit, self.retention_seconds)
        unit.after_commit(lambda: self._pruned(forgotten))

    def _pruned(self, forgotten: list[str]) -> None:
        self._pruned_at = time.monotonic()
        if forgotten:
            log.info("forgot %d worker(s) silent for the retention period", len(forgotten))


def as_state(beat: WorkerHeartbeatMessage) -> WorkerHeartbeat:
    """The heartbeat as the state layer records it."""
    return WorkerHeartbeat(
        worker_id=beat.worker_id,
        host=beat.host,
        pid=beat.pid,
        namespaces=beat.namespaces,
        in_flight=beat.in_flight,
        concurrency=beat.concurrency,
        status=beat.status,
        started_at=beat.started_at,
        sent_at=beat.sent_at,
        interval_seconds=beat.interval_seconds,
    )
