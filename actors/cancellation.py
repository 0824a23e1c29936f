"""Cancelling a task: the state change, then a notice that tells every worker to skip its
steps still waiting in the queues.

The state layer is what makes cancellation correct (a result that arrives later is recorded
and revives nothing); the notice only spares workers running steps nobody needs any more.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from uuid import UUID

from tasker.messaging.broker import Broker
from tasker.messaging.messages import CANCELLATIONS_CHANNEL, TaskCancelled, encode
from tasker.state.db import Database
from tasker.state.operations import Operations, OperatorOutcome

log = logging.getLogger(__name__)


def cancel_task(
    database: Database, broker: Broker, task_uuid: UUID, *, actor: str, reason: str
) -> OperatorOutcome:
    """Cancel `task_uuid` and announce it; raises as `Operations.cancel_task` does."""
    notice = encode(
        TaskCancelled(task_uuid, cancelled_at=datetime.now(UTC), actor=actor, reason=reason)
    )
    with database.transaction() as unit:
        outcome = Operations.cancel_task_in(unit, task_uuid, actor=actor, reason=reason)
        if broker.transactional:  # PGMQ: a NOTIFY, heard when the cancellation commits
            broker.broadcast(CANCELLATIONS_CHANNEL, notice, within=unit)
    if not broker.transactional:
        _announce_quietly(broker, task_uuid, notice)
    log.info("task %s cancelled by %s: %s", task_uuid, actor, reason)
    return outcome


def _announce_quietly(broker: Broker, task_uuid: UUID, notice: bytes) -> None:
    """Broadcast after the commit; a failure must not turn a done cancellation into an error."""
    try:
        broker.broadcast(CANCELLATIONS_CHANNEL, notice)
    except Exception as exc:
        log.warning(
            "task %s is cancelled, but workers were not told (%s): steps of it already queued "
            "will run, and their results change nothing",
            task_uuid,
            exc,
        )
