"""Poison messages: which task a broken body names, and when an actor gives up on one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import msgspec
import psycopg
import pytest

from tasker.actors.guarded import GuardedActor
from tasker.actors.poison import Quarantine
from tasker.messaging.broker import Delivery, dead_letter_queue
from tasker.messaging.memory import InMemoryBroker
from tasker.messaging.origin import MessageOrigin, origin_of
from tasker.state.poison import PoisonOutcome, PoisonRecords

TASK, STEP = uuid.uuid4(), uuid.uuid4()
QUEUE = "inbox"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"task_uuid": str(TASK), "step_uuid": str(STEP), "fence": 3, "attempt": 1},
         MessageOrigin(TASK, STEP, 3)),
        ({"task_uuid": str(TASK), "step_uuid": "nope", "attempt": 2}, MessageOrigin(TASK, None, 2)),
        ({"task_uuid": str(TASK), "fence": "3", "attempt": True}, MessageOrigin(TASK)),
        ({"task_uuid": "not-a-uuid"}, None),
        ({"step_uuid": str(STEP)}, None),
        ([str(TASK)], None),
    ],
)  # fmt: skip
def test_origin_is_read_from_well_formed_fields_only(body: Any, expected: Any) -> None:
    assert origin_of(msgspec.json.encode(body)) == expected


def test_a_body_that_is_not_json_names_no_task() -> None:
    assert origin_of(b"\xff{not json") is None


class RecordingRecords(PoisonRecords):
    def __init__(self) -> None:
        self.opened: list[tuple[UUID, UUID | None, int | None, dict[str, Any]]] = []

    def open(
        self, task_uuid: UUID, *, step_uuid: UUID | None, fence: int | None,
        details: dict[str, Any],
    ) -> PoisonOutcome | None:  # fmt: skip
        self.opened.append((task_uuid, step_uuid, fence, details))
        return PoisonOutcome(task_uuid, "error", entry_opened=True, step_failed=True)


class Handle(msgspec.Struct, frozen=True):
    delivery: Delivery


class Failing(GuardedActor):
    def __init__(self, broker: InMemoryBroker, quarantine: Quarantine, error: Exception) -> None:
        super().__init__(broker, quarantine=quarantine)
        self.error = error

    def handlers(self) -> dict[type[Any], Any]:
        return {Handle: self.fail}

    def fail(self, message: Handle) -> None:
        raise self.error


@pytest.fixture
def broker() -> Iterator[InMemoryBroker]:
    broker = InMemoryBroker(max_deliveries=2)
    broker.ensure_queue(QUEUE)
    yield broker
    broker.close()


def handle_delivery(broker: InMemoryBroker, error: Exception, deliveries: int) -> RecordingRecords:
    """Deliver one message `deliveries` times; the actor fails on the last one."""
    broker.send(QUEUE, msgspec.json.encode({"task_uuid": str(TASK), "step_uuid": str(STEP)}))
    for _ in range(deliveries - 1):
        broker.nack(broker.receive(QUEUE, wait=1)[0])
    [delivery] = broker.receive(QUEUE, wait=1)
    records = RecordingRecords()
    actor = Failing.start(broker, Quarantine(broker, records), error)
    try:
        actor.ask(Handle(delivery))
    finally:
        actor.stop()
    return records


def dead_letters(broker: InMemoryBroker) -> list[str]:
    deliveries = broker.receive(dead_letter_queue(QUEUE), max_messages=5)
    return [msgspec.json.decode(d.body)["reason"] for d in deliveries]


def test_a_message_failing_on_its_last_delivery_is_dead_lettered_and_recorded(
    broker: InMemoryBroker,
) -> None:
    records = handle_delivery(broker, ValueError("bad result"), deliveries=2)

    assert dead_letters(broker) == ["handling failed on all 2 deliveries: ValueError: bad result"]
    [(task, step, fence, details)] = records.opened
    assert (task, step, fence) == (TASK, STEP, None)
    assert details["delivery_count"] == 2


def test_a_failure_before_the_last_delivery_is_retried(broker: InMemoryBroker) -> None:
    records = handle_delivery(broker, ValueError("bad result"), deliveries=1)

    assert (dead_letters(broker), records.opened) == ([], [])
    assert broker.receive(QUEUE, wait=3)  # handed back for another try


def test_a_database_outage_on_the_last_delivery_is_not_poison(broker: InMemoryBroker) -> None:
    records = handle_delivery(broker, psycopg.OperationalError("server closed"), deliveries=2)

    assert (dead_letters(broker), records.opened) == ([], [])
