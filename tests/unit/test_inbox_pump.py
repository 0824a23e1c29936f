"""Inbox pumps: several actors behind one pump, and nothing received while the database
circuit is open (an outage spends no deliveries)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pybreaker
import pykka
import pytest

from tasker.actors.inbox import InboxPump
from tasker.actors.messages import ActorMessage, StepResultReceived, StepResultsReceived
from tasker.actors.poison import Quarantine
from tasker.config import load_config
from tasker.messaging.broker import Delivery
from tasker.messaging.memory import InMemoryBroker
from tasker.messaging.messages import AnyMessage, StepResultMessage, encode
from tasker.resilience import circuit_breaker, hold_while_open
from tasker.state.db import counts_against_database
from tasker.state.poison import PoisonRecords

QUEUE = "results"
CONFIG = load_config(
    environ={"TASKER_CIRCUIT_FAILURE_THRESHOLD": "1", "TASKER_CIRCUIT_RESET_TIMEOUT_SECONDS": "0.1"}
)


class Database:
    """Stands in for `state.db.Database`'s ping: fails while `down` is set."""

    def __init__(self, breaker: pybreaker.CircuitBreaker) -> None:
        self.breaker = breaker
        self.down = True
        self.pings = 0

    def ping(self) -> None:
        with self.breaker.calling():
            self.pings += 1
            if self.down:
                raise psycopg.OperationalError("connection refused")


class Recorder(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[StepResultReceived] = []

    def on_receive(self, message: Any) -> Any:
        self.received.append(message)
        return None

    def count(self) -> int:
        return len(self.received)


def _translate(delivery: Delivery, message: AnyMessage) -> ActorMessage | None:
    assert isinstance(message, StepResultMessage)
    return StepResultReceived(delivery, message)


@pytest.fixture
def open_breaker() -> pybreaker.CircuitBreaker:
    breaker = circuit_breaker("database", CONFIG, counts_against_database)
    breaker.open()
    return breaker


@pytest.fixture
def recorder() -> Iterator[pykka.ActorRef[Any]]:
    ref = Recorder.start()
    yield ref
    ref.stop()


def _pump(broker: InMemoryBroker, target: pykka.ActorRef[Any], database: Database) -> InboxPump:
    def hold(stopping: threading.Event) -> None:
        hold_while_open(database.breaker, database.ping, stopping, poll_seconds=0.02)

    quarantine = Quarantine(broker, PoisonRecords(None))  # type: ignore[arg-type]
    return InboxPump(
        broker, QUEUE, [target], _translate, quarantine=quarantine, max_in_flight=4,
        visibility_timeout=5.0, wait=0.05, hold=hold,
    )  # fmt: skip


def _result_body() -> bytes:
    now = datetime.now(UTC)
    return encode(StepResultMessage(uuid.uuid4(), uuid.uuid4(), 1, "success", now, now, "w"))


def _eventually(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_a_pump_receives_nothing_while_the_database_circuit_is_open(
    open_breaker: pybreaker.CircuitBreaker, recorder: pykka.ActorRef[Any]
) -> None:
    broker = InMemoryBroker()
    broker.ensure_queue(QUEUE)
    broker.send(QUEUE, _result_body())
    database = Database(open_breaker)
    pump = _pump(broker, recorder, database)
    pump.start()
    try:
        assert _eventually(lambda: database.pings >= 3)  # trials after each reset timeout
        assert recorder.proxy().count().get() == 0
        assert broker.queue_stats(QUEUE).ready == 1  # not received: no delivery spent

        database.down = False
        assert _eventually(lambda: recorder.proxy().count().get() == 1)
    finally:
        pump.stop()
        pump.join(timeout=5)
    delivered = recorder.proxy().received.get()[0].delivery
    assert delivered.delivery_count == 1
    assert open_breaker.current_state == pybreaker.STATE_CLOSED


def test_stopping_ends_the_hold_at_once(open_breaker: pybreaker.CircuitBreaker) -> None:
    database = Database(open_breaker)
    stopping = threading.Event()
    stopping.set()

    started = time.monotonic()
    hold_while_open(open_breaker, database.ping, stopping, poll_seconds=10)

    assert time.monotonic() - started < 1


def test_a_closed_circuit_does_not_hold() -> None:
    breaker = circuit_breaker("database", CONFIG, counts_against_database)
    database = Database(breaker)

    hold_while_open(breaker, database.ping, threading.Event())

    assert database.pings == 0


class SlowBatches(pykka.ThreadingActor):
    """Takes a while over each batch; records its size and how many batches overlapped."""

    running = 0
    most_at_once = 0
    lock = threading.Lock()

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        self.sizes = sizes

    def on_receive(self, message: Any) -> Any:
        with SlowBatches.lock:
            SlowBatches.running += 1
            SlowBatches.most_at_once = max(SlowBatches.most_at_once, SlowBatches.running)
        time.sleep(0.05)
        with SlowBatches.lock:
            SlowBatches.running -= 1
        self.sizes.append(len(message.results))
        return None


def test_one_pump_keeps_several_actors_busy_with_one_batch_each() -> None:
    broker = InMemoryBroker()
    broker.ensure_queue(QUEUE)
    for _ in range(40):
        broker.send(QUEUE, _result_body())
    sizes: tuple[list[int], list[int]] = ([], [])
    actors = [SlowBatches.start(sizes[0]), SlowBatches.start(sizes[1])]
    pump = InboxPump(
        broker, QUEUE, actors, _translate, quarantine=Quarantine(broker, None),  # type: ignore[arg-type]
        max_in_flight=16, visibility_timeout=5.0, wait=0.05,
        group=lambda messages: StepResultsReceived(tuple(messages)),  # type: ignore[arg-type]
    )  # fmt: skip
    pump.start()
    try:
        assert _eventually(lambda: sum(map(sum, sizes)) == 40)
    finally:
        pump.stop()
        pump.join(timeout=5)
        for actor in actors:
            actor.stop()
    assert sizes[0] and sizes[1]  # both worked
    assert SlowBatches.most_at_once == 2  # in parallel, never more than one batch each
    assert max(max(sizes[0]), max(sizes[1])) > 1  # arrivals gathered while they were busy
