"""Poison messages: dead-letter them, and open an investigation record for their task.

A message the orchestrator can never handle (undecodable, of the wrong kind, or failing on
its last allowed delivery) goes to the broker's dead-letter queue with the reason. If its
body still names an existing task, that task also gets a dead-letter investigation record
(`state/poison.py` says what happens to the task).
"""

from __future__ import annotations

import logging
from typing import Any

import pybreaker

from tasker.messaging.broker import Broker, Delivery
from tasker.messaging.circuit import counts_against_broker
from tasker.messaging.origin import origin_of
from tasker.state.db import counts_against_database
from tasker.state.poison import PoisonRecords

log = logging.getLogger(__name__)

#: Characters of the message body kept in the investigation record.
_BODY_EXCERPT = 4000


def is_outage(error: BaseException) -> bool:
    """Whether `error` says the database or broker is down, not that the message is bad."""
    return (
        isinstance(error, pybreaker.CircuitBreakerError)
        or counts_against_database(error)
        or counts_against_broker(error)
    )


class Quarantine:
    """Dead-letters poison messages and opens their tasks' investigation records."""

    def __init__(self, broker: Broker, records: PoisonRecords) -> None:
        self.broker = broker
        self.records = records

    def bury(self, delivery: Delivery, reason: str) -> None:
        """Dead-letter `delivery` with `reason`, recording it against its task if it names one.

        The record comes first: if the database fails, the message is still dead-lettered
        (and the failure logged); a broker failure raises, as `Broker.dead_letter` does.
        """
        try:
            self._record(delivery, reason)
        except Exception:
            log.exception("could not record the poison message from %s", delivery.queue)
        self.broker.dead_letter(delivery, reason)

    def _record(self, delivery: Delivery, reason: str) -> None:
        origin = origin_of(delivery.body)
        if origin is None:
            return
        outcome = self.records.open(
            origin.task_uuid,
            step_uuid=origin.step_uuid,
            fence=origin.fence,
            details=_details(delivery, reason),
        )
        if outcome is not None:
            log.error(
                "poison message for task %s dead-lettered (%s); record opened: %s, step failed: "
                "%s, task now %s",
                origin.task_uuid,
                reason,
                outcome.entry_opened,
                outcome.step_failed,
                outcome.task_status,
            )


def _details(delivery: Delivery, reason: str) -> dict[str, Any]:
    text = delivery.body.decode(errors="replace").replace("\x00", "\ufffd")
    return {
        "source_queue": delivery.queue,
        "dead_letter_reason": reason,
        "delivery_count": delivery.delivery_count,
        "message": text[:_BODY_EXCERPT],
    }
