"""The worker registry on real PostgreSQL: heartbeats recorded, newest wins, liveness."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from tasker.actors.messages import WorkerHeartbeatReceived
from tasker.actors.worker_registry import WorkerRegistry
from tasker.messaging.memory import InMemoryBroker
from tasker.messaging.messages import (
    ORCHESTRATION_WORKER_HEARTBEATS_QUEUE,
    WorkerHeartbeatMessage,
    encode,
)
from tasker.state.db import Database
from tasker.state.migrate import migrate
from tasker.state.records import WorkerHeartbeat
from tasker.state.repository import StateRepository

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def repository(make_database: Callable[[], str]) -> Iterator[StateRepository]:
    url = make_database()
    migrate(url)
    database = Database(url, max_size=2)
    yield StateRepository(database)
    database.close()


@pytest.fixture(autouse=True)
def no_workers(repository: StateRepository) -> None:
    with repository.database.transaction() as unit:
        unit.execute_sql("DELETE FROM tasker.workers")


def beat(worker_id: str = "h:1:a", *, age: float = 0.0, **fields: object) -> WorkerHeartbeat:
    sent = datetime.now(UTC) - timedelta(seconds=age)
    values: dict[str, object] = {
        "worker_id": worker_id,
        "host": "h",
        "pid": 1,
        "namespaces": ["orders", "billing"],
        "in_flight": 0,
        "concurrency": 4,
        "status": "running",
        "started_at": sent - timedelta(seconds=60),
        "sent_at": sent,
        "interval_seconds": 5.0,
        **fields,
    }
    return WorkerHeartbeat(**values)  # type: ignore[arg-type]


def record(repository: StateRepository, heartbeat: WorkerHeartbeat) -> bool:
    with repository.database.transaction() as unit:
        return repository.record_worker_heartbeat(unit, heartbeat)


def registry_receives(
    repository: StateRepository, message: WorkerHeartbeatMessage, **options: float
) -> InMemoryBroker:
    """Deliver `message` to a registry actor (which lives on); the broker it came through."""
    broker = InMemoryBroker()
    broker.ensure_queue(ORCHESTRATION_WORKER_HEARTBEATS_QUEUE)
    broker.send(ORCHESTRATION_WORKER_HEARTBEATS_QUEUE, encode(message))
    (delivery,) = broker.receive(ORCHESTRATION_WORKER_HEARTBEATS_QUEUE, visibility_timeout=30)
    actor = WorkerRegistry.start(broker, repository.database, repository, **options)
    try:
        actor.ask(WorkerHeartbeatReceived(delivery, message), timeout=10)
        assert actor.is_alive()
    finally:
        actor.stop()
    return broker


def test_a_first_heartbeat_registers_the_worker(repository: StateRepository) -> None:
    heartbeat = beat(in_flight=3)

    assert record(repository, heartbeat)

    (worker,) = repository.list_workers()
    assert (worker.worker_id, worker.host, worker.pid) == ("h:1:a", "h", 1)
    assert worker.namespaces == ["orders", "billing"]
    assert (worker.in_flight, worker.concurrency, worker.status) == (3, 4, "running")
    assert worker.last_heartbeat_at == heartbeat.sent_at
    assert worker.alive and 0 <= worker.heartbeat_age_seconds < 5


def test_a_newer_heartbeat_replaces_the_older(repository: StateRepository) -> None:
    record(repository, beat(age=2, in_flight=1))

    assert record(repository, beat(age=1, in_flight=2, status="stopping"))

    (worker,) = repository.list_workers()
    assert (worker.in_flight, worker.status) == (2, "stopping")


def test_an_older_heartbeat_arriving_late_changes_nothing(repository: StateRepository) -> None:
    record(repository, beat(age=1, status="stopped"))

    assert not record(repository, beat(age=2, status="running"))

    (worker,) = repository.list_workers()
    assert worker.status == "stopped"


def test_a_worker_silent_for_three_intervals_is_not_alive(repository: StateRepository) -> None:
    record(repository, beat("quiet", age=16, interval_seconds=5.0))
    record(repository, beat("recent", age=14, interval_seconds=5.0))

    alive = {worker.worker_id: worker.alive for worker in repository.list_workers()}

    assert alive == {"quiet": False, "recent": True}


def test_a_stopped_worker_is_not_alive_even_when_recent(repository: StateRepository) -> None:
    record(repository, beat(status="stopped"))

    (worker,) = repository.list_workers()

    assert worker.status == "stopped" and not worker.alive


def test_the_registry_actor_records_a_heartbeat_then_acks_it(
    repository: StateRepository,
) -> None:
    now = datetime.now(UTC)
    message = WorkerHeartbeatMessage("w:9", "box", 9, ["ns"], 0, 2, now, now, "running", 1.0)
    broker = registry_receives(repository, message)

    (worker,) = repository.list_workers()
    assert (worker.worker_id, worker.pid, worker.namespaces) == ("w:9", 9, ["ns"])
    assert worker.heartbeat_interval_seconds == 1.0
    stats = broker.queue_stats(ORCHESTRATION_WORKER_HEARTBEATS_QUEUE)
    assert (stats.ready, stats.in_flight) == (0, 0)


def test_the_registry_actor_gives_back_a_heartbeat_it_cannot_record(
    repository: StateRepository,
) -> None:
    now = datetime.now(UTC)
    bad = WorkerHeartbeatMessage("w:bad", "box", 1, [], 0, 1, now, now)
    bad = msgspec.structs.replace(bad, status="exploded")
    broker = registry_receives(repository, bad)

    assert repository.list_workers() == []
    time.sleep(1.1)  # handed back with a short delay, not lost
    assert broker.queue_stats(ORCHESTRATION_WORKER_HEARTBEATS_QUEUE).ready == 1


def test_the_registry_forgets_workers_silent_for_the_retention_period(
    repository: StateRepository,
) -> None:
    record(repository, beat("gone", age=3 * 3600, status="stopped"))
    record(repository, beat("vanished", age=2 * 3600))  # never said it stopped
    record(repository, beat("recent", age=60, status="stopped"))
    now = datetime.now(UTC)
    message = WorkerHeartbeatMessage("live", "box", 9, ["ns"], 0, 2, now, now, "running", 1.0)
    registry_receives(repository, message, retention_seconds=3600.0)

    assert {worker.worker_id for worker in repository.list_workers()} == {"recent", "live"}
