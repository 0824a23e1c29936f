"""The Broker contract: every backend must pass every test here.

Bodies are compared as decoded JSON: PGMQ stores jsonb and may re-serialise them.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import msgspec
import pytest

from tasker.messaging.broker import (
    Broker,
    DeadLetter,
    Delivery,
    QueueStats,
    Transaction,
    dead_letter_queue,
)

MakeBroker = Callable[..., Broker]
Begin = Callable[[], AbstractContextManager[Transaction]]


def body(number: int) -> bytes:
    return msgspec.json.encode({"n": number})


def numbers(deliveries: list[Delivery]) -> list[int]:
    return [msgspec.json.decode(delivery.body)["n"] for delivery in deliveries]


def eventually(check: Callable[[], Any], expected: Any, timeout: float = 3.0) -> None:
    """Assert `check()` reaches `expected` (some backends report counts asynchronously)."""
    deadline = time.monotonic() + timeout
    while (actual := check()) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert actual == expected


def stats(ready: int, in_flight: int, queue: str) -> QueueStats:
    return QueueStats(queue=queue, ready=ready, in_flight=in_flight)


def receive_one(broker: Broker, queue: str, **options: Any) -> Delivery:
    deliveries = broker.receive(queue, wait=options.pop("wait", 3.0), **options)
    assert len(deliveries) == 1, f"expected one message on {queue}, got {deliveries}"
    return deliveries[0]


def test_sent_message_is_received_with_its_body_and_first_delivery(
    broker: Broker, queue: str
) -> None:
    broker.send(queue, b'{"greeting": "hello", "n": 1}')

    delivery = receive_one(broker, queue)

    assert delivery.queue == queue
    assert msgspec.json.decode(delivery.body) == {"greeting": "hello", "n": 1}
    assert delivery.delivery_count == 1


def test_single_consumer_receives_in_send_order(broker: Broker, queue: str) -> None:
    for number in range(5):
        broker.send(queue, body(number))

    received = []
    for _ in range(5):
        delivery = receive_one(broker, queue)
        broker.ack(delivery)
        received.append(delivery)

    assert numbers(received) == [0, 1, 2, 3, 4]


def test_batch_is_received_in_batches_and_in_order(broker: Broker, queue: str) -> None:
    broker.send_batch(queue, [body(number) for number in range(10)])

    first = broker.receive(queue, max_messages=10, wait=3.0)
    received = list(first)
    while len(received) < 10 and (more := broker.receive(queue, max_messages=10, wait=3.0)):
        received.extend(more)

    assert 1 < len(first) <= 10
    assert numbers(received) == list(range(10))


def test_competing_consumers_each_get_different_messages(broker: Broker, queue: str) -> None:
    broker.send_batch(queue, [body(number) for number in range(20)])
    received: list[int] = []
    lock = threading.Lock()

    def consume() -> None:
        while deliveries := broker.receive(queue, max_messages=3, visibility_timeout=30.0):
            for delivery in deliveries:
                broker.ack(delivery)
            with lock:
                received.extend(numbers(deliveries))

    consumers = [threading.Thread(target=consume) for _ in range(4)]
    for consumer in consumers:
        consumer.start()
    for consumer in consumers:
        consumer.join()

    assert sorted(received) == list(range(20))


def test_acked_message_is_never_redelivered(broker: Broker, queue: str) -> None:
    broker.send(queue, body(1))
    broker.ack(receive_one(broker, queue, visibility_timeout=1.0))

    time.sleep(1.3)  # past the lease it would have come back after

    assert broker.receive(queue) == []
    eventually(lambda: broker.queue_stats(queue), stats(0, 0, queue))


def test_unacked_message_returns_after_visibility_timeout_counted(
    broker: Broker, queue: str
) -> None:
    broker.send(queue, body(1))
    first = receive_one(broker, queue, visibility_timeout=1.0)
    leased_at = time.monotonic()

    assert broker.receive(queue) == []  # hidden while leased
    again = receive_one(broker, queue, visibility_timeout=1.0, wait=4.0)

    assert time.monotonic() - leased_at >= 0.9
    assert numbers([again]) == [1]
    assert (first.delivery_count, again.delivery_count) == (1, 2)


def test_nack_with_delay_redelivers_after_the_delay_and_not_before(
    broker: Broker, queue: str
) -> None:
    broker.send(queue, body(1))
    broker.nack(receive_one(broker, queue, visibility_timeout=30.0), delay=1.0)
    nacked_at = time.monotonic()

    assert broker.receive(queue, wait=0.5) == []
    again = receive_one(broker, queue, wait=4.0)

    assert time.monotonic() - nacked_at >= 0.9
    assert again.delivery_count == 2


def test_nack_without_delay_redelivers_at_once(broker: Broker, queue: str) -> None:
    broker.send(queue, body(1))
    broker.nack(receive_one(broker, queue, visibility_timeout=30.0))
    nacked_at = time.monotonic()

    again = receive_one(broker, queue, wait=3.0)

    assert time.monotonic() - nacked_at < 1.0
    assert again.delivery_count == 2


def test_extend_visibility_keeps_a_message_hidden(broker: Broker, queue: str) -> None:
    broker.send(queue, body(1))
    delivery = receive_one(broker, queue, visibility_timeout=1.0)

    broker.extend_visibility(delivery, 4.0)
    time.sleep(1.5)  # past the original lease

    assert broker.receive(queue) == []
    broker.ack(delivery)


def test_delayed_send_is_invisible_until_the_delay_passes(broker: Broker, queue: str) -> None:
    broker.send(queue, body(1), delay=1.0)
    sent_at = time.monotonic()

    assert broker.receive(queue, wait=0.5) == []
    delivery = receive_one(broker, queue, wait=4.0)

    assert time.monotonic() - sent_at >= 0.9
    assert delivery.delivery_count == 1


def test_message_delivered_too_often_goes_to_the_dead_letter_queue(
    broker: Broker, queue: str
) -> None:
    broker.send(queue, body(7))
    for _ in range(broker.max_deliveries):
        broker.nack(receive_one(broker, queue, visibility_timeout=30.0))

    assert broker.receive(queue, wait=0.5) == []  # the next delivery would exceed the limit
    buried = receive_one(broker, dead_letter_queue(queue))

    letter = msgspec.json.decode(buried.body, type=DeadLetter)
    assert letter.source_queue == queue
    assert letter.delivery_count == broker.max_deliveries
    assert letter.reason
    assert msgspec.json.decode(letter.body) == {"n": 7}
    eventually(lambda: broker.queue_stats(queue), stats(0, 0, queue))


def test_dead_letter_moves_a_message_with_its_reason(broker: Broker, queue: str) -> None:
    broker.send(queue, body(3))

    broker.dead_letter(receive_one(broker, queue), "no handler for step")

    letter = msgspec.json.decode(
        receive_one(broker, dead_letter_queue(queue)).body, type=DeadLetter
    )
    assert (letter.source_queue, letter.reason, letter.delivery_count) == (
        queue,
        "no handler for step",
        1,
    )
    assert msgspec.json.decode(letter.body) == {"n": 3}
    eventually(lambda: broker.queue_stats(queue), stats(0, 0, queue))


def test_waiting_receive_wakes_when_a_message_arrives(make_broker: MakeBroker) -> None:
    # A broker that polls only every 30 s: only a real wake-up can make this fast.
    broker = make_broker(poll_interval=30.0)
    queue = f"contract_{uuid.uuid4().hex[:16]}"
    broker.ensure_queue(queue)
    threading.Timer(0.2, broker.send, args=(queue, body(1))).start()
    started = time.monotonic()

    delivery = receive_one(broker, queue, wait=10.0)

    assert time.monotonic() - started < 1.5
    assert numbers([delivery]) == [1]


def test_waiting_receive_returns_empty_when_the_wait_ends(broker: Broker, queue: str) -> None:
    started = time.monotonic()

    assert broker.receive(queue, wait=0.5) == []
    assert 0.45 <= time.monotonic() - started < 2.0


def test_wake_interrupts_a_waiting_receive(make_broker: MakeBroker) -> None:
    broker = make_broker(poll_interval=30.0)
    queue = f"contract_{uuid.uuid4().hex[:16]}"
    broker.ensure_queue(queue)
    threading.Timer(0.3, broker.wake).start()
    started = time.monotonic()

    assert broker.receive(queue, wait=10.0) == []
    assert time.monotonic() - started < 2.0


def test_queue_stats_count_ready_and_in_flight(broker: Broker, queue: str) -> None:
    broker.send_batch(queue, [body(1), body(2), body(3)])
    eventually(lambda: broker.queue_stats(queue), stats(3, 0, queue))

    receive_one(broker, queue, visibility_timeout=30.0)

    eventually(lambda: broker.queue_stats(queue), stats(2, 1, queue))


def test_ensure_queue_is_idempotent_even_when_raced(broker: Broker, queue: str) -> None:
    fresh = f"{queue}_raced"
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def ensure() -> None:
        barrier.wait()
        try:
            broker.ensure_queue(fresh)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ensure) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    broker.ensure_queue(fresh)

    assert errors == []
    broker.send(fresh, body(1))
    assert numbers([receive_one(broker, fresh)]) == [1]


def test_send_within_a_committed_transaction_is_delivered(
    broker: Broker, queue: str, begin: Begin
) -> None:
    with begin() as transaction:
        broker.send(queue, body(1), within=transaction)
        broker.send_batch(queue, [body(2), body(3)], within=transaction)

    received = broker.receive(queue, max_messages=3, wait=3.0)
    while len(received) < 3 and (more := broker.receive(queue, max_messages=3, wait=3.0)):
        received.extend(more)
    assert numbers(received) == [1, 2, 3]


def test_send_within_a_rolled_back_transaction_is_never_delivered(
    broker: Broker, queue: str, begin: Begin
) -> None:
    with pytest.raises(RuntimeError), begin() as transaction:
        broker.send(queue, body(1), within=transaction)
        broker.send_batch(queue, [body(2)], within=transaction)
        raise RuntimeError("roll back")

    assert broker.receive(queue, wait=0.5) == []
    assert broker.queue_stats(queue) == stats(0, 0, queue)


def test_ack_within_a_committed_transaction_removes_the_message(
    broker: Broker, queue: str, begin: Begin
) -> None:
    broker.send(queue, body(1))
    delivery = receive_one(broker, queue, visibility_timeout=30.0)

    with begin() as transaction:
        broker.ack(delivery, within=transaction)

    eventually(lambda: broker.queue_stats(queue), stats(0, 0, queue))


def test_ack_within_a_rolled_back_transaction_keeps_the_message(
    broker: Broker, queue: str, begin: Begin
) -> None:
    broker.send(queue, body(1))
    delivery = receive_one(broker, queue, visibility_timeout=1.0)

    with pytest.raises(RuntimeError), begin() as transaction:
        broker.ack(delivery, within=transaction)
        raise RuntimeError("roll back")

    again = receive_one(broker, queue, wait=4.0)
    assert again.delivery_count == 2


def test_ack_many_removes_every_delivery(
    broker: Broker, queue: str, new_queue: Callable[[], str]
) -> None:
    other = new_queue()
    broker.send_batch(queue, [body(1), body(2)])
    broker.send(other, body(3))
    held = [receive_one(broker, queue), receive_one(broker, queue), receive_one(broker, other)]

    broker.ack_many(held)

    eventually(lambda: broker.queue_stats(queue), stats(0, 0, queue))
    eventually(lambda: broker.queue_stats(other), stats(0, 0, other))


def test_ack_with_replies_delivers_every_reply_and_removes_every_original(
    broker: Broker, queue: str, new_queue: Callable[[], str]
) -> None:
    other, replies = new_queue(), new_queue()
    broker.send_batch(queue, [body(1), body(2)])
    broker.send(other, body(3))
    held = [receive_one(broker, queue), receive_one(broker, queue), receive_one(broker, other)]

    broker.ack_with_replies(replies, [(delivery, body(10 + i)) for i, delivery in enumerate(held)])

    got = [receive_one(broker, replies) for _ in range(3)]
    assert sorted(numbers(got)) == [10, 11, 12]
    eventually(lambda: broker.queue_stats(queue), stats(0, 0, queue))
    eventually(lambda: broker.queue_stats(other), stats(0, 0, other))


@pytest.mark.parametrize("count", [1, 2], ids=["a lone reply", "two replies"])
def test_ack_with_replies_from_one_queue_delivers_them_all_and_removes_the_originals(
    broker: Broker, queue: str, new_queue: Callable[[], str], count: int
) -> None:
    replies = new_queue()
    broker.send_batch(queue, [body(1 + i) for i in range(count)])
    held = [receive_one(broker, queue) for _ in range(count)]

    broker.ack_with_replies(replies, [(delivery, body(20 + i)) for i, delivery in enumerate(held)])

    got = [receive_one(broker, replies) for _ in range(count)]
    assert sorted(numbers(got)) == [20 + i for i in range(count)]
    eventually(lambda: broker.queue_stats(queue), stats(0, 0, queue))


def test_ack_with_reply_delivers_the_reply_and_removes_the_original(
    broker: Broker, queue: str, new_queue: Callable[[], str]
) -> None:
    replies = new_queue()
    broker.send(queue, body(1))

    broker.ack_with_reply(receive_one(broker, queue), replies, body(2))

    assert numbers([receive_one(broker, replies)]) == [2]
    eventually(lambda: broker.queue_stats(queue), stats(0, 0, queue))


def test_send_batch_and_ack_within_a_committed_transaction_does_both(
    broker: Broker, queue: str, new_queue: Callable[[], str], begin: Begin
) -> None:
    other, onward = new_queue(), new_queue()
    broker.send_batch(queue, [body(1), body(2)])
    broker.send(other, body(3))
    from_one_queue = [receive_one(broker, queue), receive_one(broker, queue)]
    from_two_queues = [receive_one(broker, other)]

    with begin() as transaction:
        broker.send_batch_and_ack(onward, [body(10), body(11)], from_one_queue, within=transaction)
        broker.send_batch_and_ack(onward, [body(12)], from_two_queues, within=transaction)

    got = [receive_one(broker, onward) for _ in range(3)]
    assert sorted(numbers(got)) == [10, 11, 12]
    eventually(lambda: broker.queue_stats(queue), stats(0, 0, queue))
    eventually(lambda: broker.queue_stats(other), stats(0, 0, other))


def test_send_batch_and_ack_within_a_rolled_back_transaction_does_neither(
    broker: Broker, queue: str, new_queue: Callable[[], str], begin: Begin
) -> None:
    onward = new_queue()
    broker.send(queue, body(1))
    delivery = receive_one(broker, queue, visibility_timeout=1.0)

    with pytest.raises(RuntimeError), begin() as transaction:
        broker.send_batch_and_ack(onward, [body(2)], [delivery], within=transaction)
        raise RuntimeError("roll back")

    assert broker.receive(onward, wait=0.5) == []
    assert receive_one(broker, queue, wait=4.0).delivery_count == 2
