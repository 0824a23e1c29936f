"""PGMQ specifics the broker contract cannot see: installation, names, errors, wake-ups."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tasker.messaging.broker import BrokerError
from tasker.messaging.pgmq import PgmqBroker
from tasker.messaging.pgmq_install import install_pgmq
from tasker.state.db import Database

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def database_url(make_database: Callable[[], str]) -> str:
    return make_database()


@pytest.fixture
def broker(database_url: str) -> Iterator[PgmqBroker]:
    broker = PgmqBroker(database_url, poll_interval=0.1)
    yield broker
    broker.close()


def test_installers_racing_on_a_fresh_database_install_pgmq_once(
    make_database: Callable[[], str],
) -> None:
    url = make_database()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def install() -> None:
        barrier.wait()
        try:
            install_pgmq(url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=install) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT count(*) FROM pgmq.list_queues()").fetchone() == (0,)
    install_pgmq(url)  # and again, later: nothing to do


@pytest.mark.parametrize("queue", ["", "Upper", "has-dash", "semi;colon", "x" * 44])
def test_invalid_queue_names_are_refused_by_name(queue: str) -> None:
    broker = PgmqBroker("postgresql://unused/db")

    with pytest.raises(BrokerError, match="invalid PGMQ queue name") as raised:
        broker.ensure_queue(queue)

    assert repr(queue) in str(raised.value)
    assert not raised.value.recoverable


def test_using_a_queue_that_was_never_ensured_says_what_to_do(broker: PgmqBroker) -> None:
    with pytest.raises(BrokerError, match=r"ensure_queue\('never_made'\)") as raised:
        broker.send("never_made", b"{}")

    assert not raised.value.recoverable


def test_a_body_that_is_not_json_is_refused(broker: PgmqBroker) -> None:
    broker.ensure_queue("not_json")

    with pytest.raises(BrokerError, match="bodies must be JSON") as raised:
        broker.send("not_json", b"not json")

    assert not raised.value.recoverable


def test_errors_inside_the_callers_transaction_surface_as_broker_errors(
    broker: PgmqBroker, database_url: str
) -> None:
    database = Database(database_url, max_size=1)
    try:
        with pytest.raises(BrokerError), database.transaction() as transaction:
            broker.send("missing_in_tx", b"{}", within=transaction)
    finally:
        database.close()


def test_a_send_notifies_its_queue_at_commit_without_pgmqs_insert_trigger(
    broker: PgmqBroker, database_url: str
) -> None:
    broker.ensure_queue("notified")
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pgmq.enable_notify_insert('notified', 0)")  # an older install
    broker.ensure_queue("notified")
    database = Database(database_url)
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute('LISTEN "pgmq.q_notified.INSERT"')
        try:
            with database.transaction() as transaction:
                broker.send_batch("notified", [b"{}", b"{}"], within=transaction)
                assert list(listener.notifies(timeout=0.3)) == []  # not before the commit
            heard = list(listener.notifies(timeout=2.0, stop_after=1))
            assert [n.channel for n in heard] == ["pgmq.q_notified.INSERT"]
            assert list(listener.notifies(timeout=0.3)) == []  # once per transaction
        finally:
            database.close()
        triggers = listener.execute(
            "SELECT count(*) FROM pgmq.notify_insert_throttle WHERE queue_name = 'notified'"
        ).fetchone()
    assert triggers == (0,)


def test_a_body_comes_back_as_equal_json(broker: PgmqBroker) -> None:
    broker.ensure_queue("normalised")
    broker.send("normalised", b'{"b":1,"a":[1,2]}')

    (delivery,) = broker.receive("normalised")

    assert delivery.body == b'{"a": [1, 2], "b": 1}'


def test_a_closed_broker_refuses_work(database_url: str) -> None:
    broker = PgmqBroker(database_url)
    broker.ensure_queue("after_close")
    broker.close()

    with pytest.raises(BrokerError, match="closed") as raised:
        broker.send("after_close", b"{}")

    assert not raised.value.recoverable


_LISTENERS = """
SELECT pid FROM pg_stat_activity
 WHERE datname = current_database() AND query LIKE 'LISTEN %%' AND pid <> pg_backend_pid()
"""


def _listening_backends(database_url: str) -> list[int]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        return [row[0] for row in connection.execute(_LISTENERS).fetchall()]


def test_a_broker_listens_on_all_its_queues_and_broadcasts_over_one_connection(
    database_url: str,
) -> None:
    # PostgreSQL wakes every listening backend at every NOTIFY: each one costs CPU per hop.
    broker = PgmqBroker(database_url, poll_interval=0.1)
    try:
        for queue in ("one_of_three", "two_of_three", "three_of_three"):
            broker.ensure_queue(queue)
            broker.receive(queue, wait=0.05)
        subscription = broker.subscribe("one_connection")

        assert len(_listening_backends(database_url)) == 1
        subscription.close()
    finally:
        broker.close()
    assert _listening_backends(database_url) == []


def test_wake_ups_resume_after_the_listening_connection_is_killed(database_url: str) -> None:
    # A broker that polls only every 3 s (and reconnects after as long): only a restored
    # LISTEN makes a waiting receive return well within that.
    broker = PgmqBroker(database_url, poll_interval=3.0)
    try:
        broker.ensure_queue("relisten")
        broker.receive("relisten", wait=0.05)
        (listener,) = _listening_backends(database_url)
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("SELECT pg_terminate_backend(%s)", (listener,))
        _wait_for(lambda: len(_listening_backends(database_url)) == 1, timeout=10.0)

        timer = threading.Timer(0.3, lambda: broker.send("relisten", b'{"n": 1}'))
        started = time.monotonic()
        timer.start()
        deliveries = broker.receive("relisten", wait=10.0)
        timer.join()

        assert [d.body for d in deliveries] == [b'{"n": 1}']
        assert time.monotonic() - started < 2.0
    finally:
        broker.close()


def _wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


class _CommitModeSpy(PgmqBroker):
    """Runs each statement in a transaction of its own and notes how that transaction
    commits: 'on' waits for the WAL flush, 'off' does not."""

    def __init__(self, url: str) -> None:
        super().__init__(url, poll_interval=0.1)
        self.commit_modes: list[str] = []

    def _execute(self, query: str, params: Any, *, queue: str, within: Any = None) -> Any:
        assert within is None
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            with connection.transaction():
                rows = connection.execute(query, params).fetchall()
                mode = connection.execute("SHOW synchronous_commit").fetchone()
            self.commit_modes.append(str(mode[0]) if mode else "?")
        return rows


def test_only_leases_and_a_workers_replies_commit_without_waiting_for_the_flush(
    database_url: str,
) -> None:
    spy = _CommitModeSpy(database_url)
    for queue in ("commit_steps", "commit_results"):
        spy.ensure_queue(queue)
    spy.send_batch("commit_steps", [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}', b'{"n": 4}'])
    assert spy.commit_modes[-1] == "on"
    held = spy.receive("commit_steps", visibility_timeout=30, max_messages=4)
    assert len(held) == 4 and spy.commit_modes[-1] == "off"  # a lease

    spy.ack_with_replies("commit_results", [(held[0], b'{"r": 1}'), (held[1], b'{"r": 2}')])
    assert spy.commit_modes[-1] == "off"
    spy.ack_with_reply(held[2], "commit_results", b'{"r": 3}')
    assert spy.commit_modes[-1] == "off"
    spy.dead_letter(held[3], "kept for good")
    assert spy.commit_modes[-1] == "on"
    spy.send_batch_and_ack("commit_steps", [b'{"n": 5}'], [])
    assert spy.commit_modes[-1] == "on"

    assert spy.queue_stats("commit_results").ready == 3
    assert spy.queue_stats("commit_steps").ready + spy.queue_stats("commit_steps").in_flight == 1
    spy.close()
