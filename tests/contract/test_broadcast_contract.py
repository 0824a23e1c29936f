"""The broadcast part of the Broker contract: control notices to every current subscriber,
on every backend."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from tasker.messaging.broker import Broker, BrokerError, Subscription, Transaction

MakeBroker = Callable[..., Broker]
Begin = Callable[[], AbstractContextManager[Transaction]]


@pytest.fixture
def channel() -> str:
    return f"contract_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def subscribe() -> Iterator[Callable[[Broker, str], Subscription]]:
    """Subscribes and closes every subscription after the test."""
    subscriptions: list[Subscription] = []

    def make(broker: Broker, channel: str) -> Subscription:
        subscription = broker.subscribe(channel)
        subscriptions.append(subscription)
        return subscription

    yield make
    for subscription in subscriptions:
        subscription.close()


def hear(subscription: Subscription, count: int, timeout: float = 5.0) -> list[bytes]:
    """Receive until `count` payloads arrived or `timeout` passed."""
    heard: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(heard) < count and (remaining := deadline - time.monotonic()) > 0:
        heard.extend(subscription.receive(remaining))
    return heard


def test_a_broadcast_reaches_every_subscriber_with_its_payload(
    broker: Broker, channel: str, subscribe: Callable[[Broker, str], Subscription]
) -> None:
    first, second = subscribe(broker, channel), subscribe(broker, channel)

    broker.broadcast(channel, b'{"task": 1}')
    broker.broadcast(channel, b'{"task": 2}')

    assert hear(first, 2) == [b'{"task": 1}', b'{"task": 2}']
    assert hear(second, 2) == [b'{"task": 1}', b'{"task": 2}']


def test_a_subscriber_hears_only_its_channel_and_only_after_subscribing(
    broker: Broker, channel: str, subscribe: Callable[[Broker, str], Subscription]
) -> None:
    broker.broadcast(channel, b"before")
    subscription = subscribe(broker, channel)

    broker.broadcast(f"{channel}_other", b"elsewhere")
    broker.broadcast(channel, b"after")

    assert hear(subscription, 2, timeout=1.5) == [b"after"]


def test_receive_waits_out_its_timeout_when_nothing_is_broadcast(
    broker: Broker, channel: str, subscribe: Callable[[Broker, str], Subscription]
) -> None:
    subscription = subscribe(broker, channel)

    started = time.monotonic()
    assert subscription.receive(0.5) == []

    assert 0.4 <= time.monotonic() - started < 3.0


def test_a_waiting_receive_wakes_when_a_broadcast_arrives(
    make_broker: MakeBroker, channel: str, subscribe: Callable[[Broker, str], Subscription]
) -> None:
    # A broker that polls only every 30 s: only a real wake-up can make this fast.
    broker = make_broker(poll_interval=30.0)
    subscription = subscribe(broker, channel)
    timer = threading.Timer(0.3, lambda: broker.broadcast(channel, b"now"))

    started = time.monotonic()
    timer.start()
    heard = subscription.receive(10.0)
    timer.join()

    assert heard == [b"now"]
    assert time.monotonic() - started < 2.0


def test_a_broadcast_within_a_transaction_is_heard_only_once_it_commits(
    broker: Broker,
    channel: str,
    subscribe: Callable[[Broker, str], Subscription],
    begin: Begin,
) -> None:
    subscription = subscribe(broker, channel)

    with begin() as transaction:
        broker.broadcast(channel, b"committed", within=transaction)
        assert subscription.receive(0.3) == []

    assert hear(subscription, 1) == [b"committed"]


def test_a_broadcast_within_a_rolled_back_transaction_is_never_heard(
    broker: Broker,
    channel: str,
    subscribe: Callable[[Broker, str], Subscription],
    begin: Begin,
) -> None:
    subscription = subscribe(broker, channel)

    with pytest.raises(RuntimeError), begin() as transaction:
        broker.broadcast(channel, b"rolled back", within=transaction)
        raise RuntimeError("roll back")
    broker.broadcast(channel, b"later")

    assert hear(subscription, 2, timeout=1.5) == [b"later"]


@pytest.mark.parametrize("name", ["", "Upper", "with.dot", "x" * 41])
def test_an_unusable_channel_name_is_refused(broker: Broker, name: str) -> None:
    with pytest.raises(BrokerError, match="invalid broadcast channel") as refused:
        broker.broadcast(name, b"{}")
    assert not refused.value.recoverable
    with pytest.raises(BrokerError, match="invalid broadcast channel"):
        broker.subscribe(name)
