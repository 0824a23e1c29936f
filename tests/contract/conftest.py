"""Fixtures for the broker contract: the same tests against every backend.

Each backend is built through `messaging.backends.create_broker`, as a process builds it.
PGMQ runs on a fresh database; every test uses queues of its own, so runs never collide.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from tasker.messaging.backends import create_broker
from tasker.messaging.broker import Broker, Transaction
from tasker.state.db import Database

# Fast re-reads so delay and lease expiry show up quickly; the wake-up tests use a slow
# broker instead, to prove a waiting receive does not depend on polling.
FAST_POLL_SECONDS = 0.1
# Low, so dead-lettering takes few round trips.
MAX_DELIVERIES = 2

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("pgmq", id="pgmq", marks=pytest.mark.postgres),
    pytest.param("rabbitmq", id="rabbitmq", marks=pytest.mark.rabbitmq),
]

MakeBroker = Callable[..., Broker]
Begin = Callable[[], AbstractContextManager[Transaction]]


@pytest.fixture(scope="session")
def pgmq_database_url(make_database: Callable[[], str]) -> str:
    """One fresh database for the session's PGMQ tests (queues are per test)."""
    return make_database()


@pytest.fixture(scope="session")
def rabbitmq_vhost_url(
    make_vhost: Callable[[pytest.FixtureRequest], str], request: pytest.FixtureRequest
) -> str:
    """One fresh virtual host for the session's RabbitMQ tests, deleted with its queues at
    the end: contract tests leave queues behind, and a server's file handles are finite."""
    return make_vhost(request)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend_url(backend: str, request: pytest.FixtureRequest) -> str:
    """Where the backend connects; asks for a service fixture only when the backend needs it."""
    if backend == "pgmq":
        return str(request.getfixturevalue("pgmq_database_url"))
    if backend == "rabbitmq":
        return str(request.getfixturevalue("rabbitmq_vhost_url"))
    return "memory://"


@pytest.fixture
def make_broker(backend: str, backend_url: str) -> Iterator[MakeBroker]:
    """Factory of brokers for this backend (closed after the test)."""
    brokers: list[Broker] = []

    def make(*, poll_interval: float = FAST_POLL_SECONDS) -> Broker:
        broker = create_broker(
            backend,
            database_url=backend_url,
            rabbitmq_url=backend_url,
            max_deliveries=MAX_DELIVERIES,
            poll_interval=poll_interval,
        )
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.close()


@pytest.fixture
def broker(make_broker: MakeBroker) -> Broker:
    return make_broker()


@pytest.fixture
def new_queue(broker: Broker) -> Callable[[], str]:
    """Factory of fresh, ensured queues with names no other test or run uses."""

    def make() -> str:
        queue = f"contract_{uuid.uuid4().hex[:16]}"
        broker.ensure_queue(queue)
        return queue

    return make


@pytest.fixture
def queue(new_queue: Callable[[], str]) -> str:
    return new_queue()


class FakeTransaction:
    """A stand-in unit of work for backends that act after commit (they run no SQL)."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []

    def execute_sql(self, query: str, params: Any) -> list[tuple[Any, ...]]:
        raise AssertionError(f"a non-transactional broker ran SQL: {query}")

    def after_commit(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)


@contextmanager
def _fake_transaction() -> Iterator[Transaction]:
    """Commits (runs the callbacks) on success; an exception rolls back (drops them)."""
    transaction = FakeTransaction()
    yield transaction
    for callback in transaction.callbacks:
        callback()


@pytest.fixture
def begin(broker: Broker, backend_url: str) -> Iterator[Begin]:
    """Opens a transaction `within=` can join: a real one when the broker is transactional."""
    if not broker.transactional:
        yield _fake_transaction
        return
    database = Database(backend_url, max_size=2)
    yield database.transaction
    database.close()
