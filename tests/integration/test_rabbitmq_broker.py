"""RabbitMQ backend against the real server: what the shared broker contract cannot show.

Connection loss, RabbitMQ's consumer timeout and poison messages. Connections are closed
by name (`rabbitmqctl close_connection`), not all at once, so other users of the shared
server are not disturbed; server settings a test changes are restored after it.
"""

from __future__ import annotations

import logging
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import msgspec
import pika
import pytest

from tasker.messaging.broker import (
    BrokerError,
    DeadLetter,
    Delivery,
    QueueStats,
    dead_letter_queue,
)
from tasker.messaging.rabbitmq import RabbitMQBroker
from tests.conftest import service_unavailable

pytestmark = pytest.mark.rabbitmq

MakeBroker = Callable[..., RabbitMQBroker]


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


@pytest.fixture(scope="module")
def ctl(rabbitmq_url: str) -> Callable[..., str]:
    """`rabbitmqctl`, for tests that act on the server itself."""
    if shutil.which("rabbitmqctl") is None:
        service_unavailable("rabbitmqctl", FileNotFoundError("rabbitmqctl is not on PATH"))
    return rabbitmqctl


@pytest.fixture
def make_broker(rabbitmq_url: str) -> Iterator[MakeBroker]:
    """Factory of brokers, each with a connection name of its own (closed after the test)."""
    brokers: list[RabbitMQBroker] = []

    def make(url: str = rabbitmq_url, **options: Any) -> RabbitMQBroker:
        options.setdefault("connection_name", f"tasker-test-{uuid.uuid4().hex[:12]}")
        broker = RabbitMQBroker(url, **options)
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.close()


@pytest.fixture
def queue(rabbitmq_url: str, ctl: Callable[..., str]) -> Iterator[str]:
    """A unique queue name; afterwards the queue and every queue behind it are deleted."""
    name = f"it_rabbit_{uuid.uuid4().hex[:12]}"
    yield name
    leftovers = [
        line.strip()
        for line in ctl("list_queues", "name").splitlines()
        if line.strip() == name or line.startswith((f"{name}.", f"{name}_dlq"))
    ]
    with pika.BlockingConnection(pika.URLParameters(rabbitmq_url)) as connection:
        channel = connection.channel()
        for leftover in leftovers:
            channel.queue_delete(leftover)


def close_connections(ctl: Callable[..., str], connection_name: str) -> int:
    """Force-close the server side of every connection with this name; return how many."""
    listed = ctl("list_connections", "--no-table-headers", "pid", "client_properties")
    marker = f'{{"connection_name","{connection_name}"}}'
    pids = [line.split("\t")[0] for line in listed.splitlines() if marker in line]
    for pid in pids:
        ctl("close_connection", pid, "test: simulated connection loss")
    return len(pids)


def numbers(deliveries: list[Delivery]) -> list[int]:
    return [int(delivery.body) for delivery in deliveries]


def lease_queues(*, ctl: Callable[..., str], queue: str) -> list[str]:
    names = ctl("list_queues", "--no-table-headers", "name").split()
    return [name for name in names if name.startswith(f"{queue}.lease.")]


def test_force_closed_connection_reconnects_and_loses_nothing(
    make_broker: MakeBroker, queue: str, ctl: Callable[..., str]
) -> None:
    broker = make_broker()
    broker.ensure_queue(queue)
    broker.send_batch(queue, [str(n).encode() for n in range(20)])
    seen = []
    for delivery in broker.receive(queue, max_messages=5):
        broker.ack(delivery)
        seen.append(delivery)
    held = broker.receive(queue, max_messages=3, visibility_timeout=30.0)  # in flight

    assert close_connections(ctl, broker.connection_name) >= 1

    for delivery in held:  # stale receipts: settling them logs, RabbitMQ requeued them
        broker.ack(delivery)
    seen += held
    deadline = time.monotonic() + 10.0
    while len(seen) < 20 + len(held) and time.monotonic() < deadline:
        for delivery in broker.receive(queue, max_messages=5, wait=1.0):
            broker.ack(delivery)
            seen.append(delivery)

    # Every message arrived; only those held when the connection dropped came twice.
    counts = Counter(numbers(seen))
    assert sorted(counts) == list(range(20))
    assert {n for n, times in counts.items() if times > 1} == set(numbers(held))
    again = [d for d in seen[len(held) + 5 :] if int(d.body) in numbers(held)]
    assert all(d.delivery_count >= 2 for d in again)
    assert broker.queue_stats(queue) == QueueStats(queue, ready=0, in_flight=0)


def test_blocked_receive_resumes_by_itself_after_connection_loss(
    make_broker: MakeBroker, queue: str, ctl: Callable[..., str]
) -> None:
    consumer, producer = make_broker(), make_broker()
    consumer.ensure_queue(queue)
    received: list[Delivery] = []
    waiting = threading.Thread(target=lambda: received.extend(consumer.receive(queue, wait=10)))
    waiting.start()
    time.sleep(0.5)  # let it block in the server-side consumer

    assert close_connections(ctl, consumer.connection_name) >= 1
    time.sleep(0.5)
    producer.send(queue, b"1")

    waiting.join(timeout=8.0)
    assert not waiting.is_alive()
    assert numbers(received) == [1]


@pytest.fixture
def short_consumer_timeout(ctl: Callable[..., str]) -> Iterator[Callable[[], Any]]:
    """Channels opened inside the returned context get a 1 s consumer timeout.

    RabbitMQ 3.10 has no per-queue `x-consumer-timeout`: a channel copies the global
    setting when it opens, so it is lowered only while the test opens its channels. The
    server checks timeouts on each channel tick (60 s by default): the tick is shortened
    for the whole test. Both are restored afterwards.
    """

    def get(key: str) -> str:
        return re.sub(r"\s", "", ctl("eval", f"application:get_env(rabbit, {key})."))

    def put(key: str, value: str) -> None:
        match = re.fullmatch(r"\{ok,(\d+)\}", value)
        action = f"set_env(rabbit, {key}, {match[1]})" if match else f"unset_env(rabbit, {key})"
        ctl("eval", f"application:{action}.")

    saved_timeout, saved_tick = get("consumer_timeout"), get("channel_tick_interval")

    @contextmanager
    def window() -> Iterator[None]:
        put("consumer_timeout", "{ok,1000}")
        try:
            yield
        finally:
            put("consumer_timeout", saved_timeout)

    put("channel_tick_interval", "{ok,200}")
    try:
        yield window
    finally:
        put("channel_tick_interval", saved_tick)


def test_step_longer_than_the_consumer_timeout_is_neither_redelivered_nor_kills_the_channel(
    make_broker: MakeBroker,
    queue: str,
    rabbitmq_url: str,
    short_consumer_timeout: Callable[[], AbstractContextManager[None]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Held longer than lease_after, a delivery moves to a lease queue (and is acked) well
    # before the server's 1 s consumer timeout could close the channel under it.
    broker = make_broker(lease_after=0.3)
    control_queue = f"{queue}.control"  # deleted with the test's queues
    with short_consumer_timeout():
        broker.ensure_queue(queue)  # opens this thread's channel: it gets the short timeout
        control = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
        control_channel = control.channel()
    control_channel.queue_declare(control_queue)
    control_channel.basic_publish("", control_queue, b"held unacked")
    broker.send(queue, b"1")

    # Given a raw delivery held unacked (the control) and one received by the broker
    assert control_channel.basic_get(control_queue)[0] is not None
    delivery = broker.receive(queue, visibility_timeout=30.0, wait=3.0)[0]

    # When the step runs three times the consumer timeout, renewing its lease midway
    with caplog.at_level(logging.WARNING, logger="tasker.messaging"):
        for second in range(3):
            control.process_data_events(time_limit=1.0)  # the broker's thread is elsewhere
            assert broker.queue_stats(queue) == QueueStats(queue, ready=0, in_flight=1)
            if second == 1:
                broker.extend_visibility(delivery, 30.0)
        broker.ack(delivery)

    # Then the server did enforce the timeout, but not on the broker's delivery
    assert not control_channel.is_open, "the short consumer timeout did not take effect"
    control.close()
    ours = [record for record in caplog.records if record.name.startswith("tasker.messaging")]
    assert ours == []  # no channel was lost and nothing was retried
    assert broker.receive(queue, wait=0.5) == []
    assert broker.queue_stats(queue).in_flight == 0
    assert lease_queues(ctl=rabbitmqctl, queue=queue) == []  # the ack deleted the lease


def test_leased_delivery_still_returns_after_its_visibility_timeout(
    make_broker: MakeBroker, queue: str
) -> None:
    broker = make_broker(lease_after=0.2)
    broker.ensure_queue(queue)
    broker.send(queue, b"5")
    first = broker.receive(queue, visibility_timeout=3.0, wait=3.0)
    received_at = time.monotonic()

    time.sleep(0.6)  # moved to the slow path meanwhile, by the janitor
    assert broker.receive(queue, wait=0.5) == []  # still hidden
    assert lease_queues(ctl=rabbitmqctl, queue=queue) != []
    again = broker.receive(queue, wait=5.0)

    assert time.monotonic() - received_at >= 2.9
    assert [(d.body, d.delivery_count) for d in first + again] == [(b"5", 1), (b"5", 2)]
    broker.ack(first[0])  # too late: logged, harmless
    broker.ack(again[0])
    assert broker.receive(queue, wait=0.3) == []


def test_message_that_keeps_timing_out_is_dead_lettered_after_max_deliveries(
    make_broker: MakeBroker, queue: str
) -> None:
    broker = make_broker(max_deliveries=2)
    broker.ensure_queue(queue)
    broker.send(queue, b'{"step": "poison"}')

    counts = []
    for _ in range(2):  # each consumer "crashes": never acks, the lease expires
        counts += [d.delivery_count for d in broker.receive(queue, visibility_timeout=0.3)]
        time.sleep(0.6)

    assert counts == [1, 2]
    assert broker.receive(queue, wait=0.5) == []  # never returned a third time
    buried = broker.receive(dead_letter_queue(queue), wait=2.0)
    letter = msgspec.json.decode(buried[0].body, type=DeadLetter)
    assert (letter.source_queue, letter.delivery_count) == (queue, 2)
    assert "max_deliveries" in letter.reason
    assert letter.body == '{"step": "poison"}'
    broker.ack(buried[0])
    assert broker.queue_stats(queue).ready == 0


def test_message_of_a_closed_consumer_comes_back_at_once_counted(
    make_broker: MakeBroker, queue: str
) -> None:
    crashed, survivor = make_broker(), make_broker()
    crashed.ensure_queue(queue)
    crashed.send(queue, b"7")
    assert numbers(crashed.receive(queue, visibility_timeout=30.0)) == [7]
    crashed.close()  # its connection is gone: RabbitMQ requeues at once, no timeout

    again = survivor.receive(queue, wait=3.0)

    assert [(d.body, d.delivery_count) for d in again] == [(b"7", 2)]
    survivor.ack(again[0])


def test_message_of_a_killed_consumer_process_comes_back(
    make_broker: MakeBroker, queue: str, rabbitmq_url: str
) -> None:
    survivor = make_broker()
    survivor.ensure_queue(queue)
    survivor.send(queue, b"8")
    script = (
        "import os, signal, sys\n"
        "from tasker.messaging.rabbitmq import RabbitMQBroker\n"
        "broker = RabbitMQBroker(sys.argv[1])\n"
        "got = broker.receive(sys.argv[2], visibility_timeout=300.0, wait=5.0)\n"
        "print(len(got), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, rabbitmq_url, queue], capture_output=True, timeout=30
    )
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.strip() == b"1"

    again = survivor.receive(queue, wait=5.0)

    assert [(d.body, d.delivery_count) for d in again] == [(b"8", 2)]
    survivor.ack(again[0])


def test_delivery_received_on_one_thread_is_settled_from_another(
    make_broker: MakeBroker, queue: str
) -> None:
    broker = make_broker()
    broker.ensure_queue(queue)
    broker.send_batch(queue, [b"1", b"2"])
    first, second = broker.receive(queue, max_messages=2, visibility_timeout=1.0)

    errors: list[BaseException] = []

    def settle() -> None:
        try:
            broker.ack(first)
            broker.extend_visibility(second, 30.0)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=settle)
    worker.start()
    worker.join()
    time.sleep(1.3)  # past the original visibility timeout

    assert errors == []
    assert broker.receive(queue) == []
    assert broker.queue_stats(queue).in_flight == 1
    broker.nack(second)
    assert numbers(broker.receive(queue, wait=2.0)) == [2]


def test_settling_from_another_thread_wakes_a_receive_blocked_on_the_same_link(
    make_broker: MakeBroker, queue: str
) -> None:
    broker = make_broker()
    other = f"{queue}_other"
    broker.ensure_queue(queue)
    broker.ensure_queue(other)
    broker.send(queue, b"1")
    held: list[Delivery] = []
    blocking = threading.Event()

    def owner() -> None:  # receives, then blocks in a receive on another queue
        held.extend(broker.receive(queue, wait=3.0))
        blocking.set()
        broker.receive(other, wait=3.0)

    waiter = threading.Thread(target=owner)
    waiter.start()
    assert blocking.wait(3.0)
    time.sleep(0.2)

    started = time.monotonic()
    broker.ack(held[0])  # handed to the busy owner, which is woken to run it
    while broker.queue_stats(queue).in_flight and time.monotonic() - started < 2.0:
        time.sleep(0.001)
    took = time.monotonic() - started

    assert waiter.is_alive()  # the owner is still waiting, the ack did not need it to end
    waiter.join()
    assert took < 0.1
    assert broker.queue_stats(queue) == QueueStats(queue, ready=0, in_flight=0)


def test_misuse_and_outages_raise_typed_errors(make_broker: MakeBroker, queue: str) -> None:
    broker = make_broker()

    with pytest.raises(BrokerError, match="invalid queue name") as bad_name:
        broker.ensure_queue("has.dots")
    with pytest.raises(BrokerError, match="ensure_queue") as missing:
        broker.send(queue, b"1")
    with pytest.raises(BrokerError, match="ensure_queue") as missing_for_a_batch:
        broker.send_batch(queue, [b"1", b"2"])
    unreachable = make_broker(url="amqp://guest:guest@127.0.0.1:1/%2F", reconnect_timeout=0.3)
    with pytest.raises(BrokerError, match="still failing") as outage:
        unreachable.queue_stats(queue)

    assert not bad_name.value.recoverable
    assert not missing.value.recoverable
    assert not missing_for_a_batch.value.recoverable
    assert outage.value.recoverable
    broker.close()
    with pytest.raises(BrokerError, match="closed"):
        broker.receive(queue)
