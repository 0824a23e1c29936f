"""In-memory broker for unit tests: the Broker semantics, in one process, with no services.

Leases, delays, redelivery counts, dead-lettering and blocking waits behave as in the real
backends; `within=` defers to after commit, as a non-transactional backend must.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from tasker.messaging.broker import (
    Broker,
    BrokerError,
    DeadLetter,
    Delivery,
    QueueStats,
    Subscription,
    Transaction,
    check_channel_name,
    dead_letter_queue,
)


@dataclass
class _Message:
    message_id: int
    body: bytes
    visible_at: float
    deliveries: int = 0


class InMemoryBroker(Broker):
    """Queues as dicts under one condition variable. Not for production: nothing persists."""

    transactional = False

    def __init__(self, *, max_deliveries: int = 5) -> None:
        super().__init__(max_deliveries=max_deliveries)
        # Insertion order is message-id order, so iteration is FIFO.
        self._queues: dict[str, dict[int, _Message]] = {}
        self._ids = itertools.count(1)
        self._condition = threading.Condition()
        self._wakes = 0
        self._closed = False
        self._subscriptions: dict[str, set[_MemorySubscription]] = {}

    def ensure_queue(self, queue: str) -> None:
        with self._condition:
            self._check_open()
            self._queues.setdefault(queue, {})
            self._queues.setdefault(dead_letter_queue(queue), {})

    def send_batch(
        self,
        queue: str,
        bodies: Sequence[bytes],
        *,
        delay: float = 0.0,
        within: Transaction | None = None,
    ) -> None:
        if within is not None:
            batch = list(bodies)
            within.after_commit(lambda: self.send_batch(queue, batch, delay=delay))
            return
        with self._condition:
            messages = self._queue(queue)
            visible_at = time.monotonic() + max(0.0, delay)
            for body in bodies:
                message_id = next(self._ids)
                messages[message_id] = _Message(message_id, bytes(body), visible_at)
            self._condition.notify_all()

    def receive(
        self,
        queue: str,
        *,
        max_messages: int = 1,
        visibility_timeout: float = 30.0,
        wait: float = 0.0,
    ) -> list[Delivery]:
        deadline = time.monotonic() + wait
        with self._condition:
            wakes = self._wakes
            while True:
                deliveries = self._take(queue, max_messages, visibility_timeout)
                now = time.monotonic()
                if deliveries or now >= deadline:
                    return deliveries
                # Sleep until the deadline or the next lease or delay ends, unless notified.
                self._condition.wait(min(deadline, self._next_visible(queue)) - now)
                if self._wakes != wakes or self._closed:
                    return []  # wake() or close(): let the consumer look at its shutdown flag

    def ack(self, delivery: Delivery, *, within: Transaction | None = None) -> None:
        if within is not None:
            within.after_commit(lambda: self.ack(delivery))
            return
        with self._condition:
            self._queue(delivery.queue).pop(delivery.receipt, None)

    def ack_with_reply(self, delivery: Delivery, queue: str, body: bytes) -> None:
        with self._condition:  # one lock: the reply and the ack happen together
            self._queue(queue)  # fail before changing anything if the reply queue is missing
            self.send(queue, body)
            self.ack(delivery)

    def nack(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        self._set_visible_at(delivery, time.monotonic() + max(0.0, delay))

    def extend_visibility(self, delivery: Delivery, seconds: float) -> None:
        self._set_visible_at(delivery, time.monotonic() + seconds)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        with self._condition:
            message = self._queue(delivery.queue).get(delivery.receipt)
            if message is not None:
                self._bury(delivery.queue, message, reason)

    def queue_stats(self, queue: str) -> QueueStats:
        with self._condition:
            now = time.monotonic()
            messages = self._queue(queue).values()
            ready = sum(1 for message in messages if message.visible_at <= now)
            return QueueStats(queue=queue, ready=ready, in_flight=len(messages) - ready)

    def broadcast(self, channel: str, payload: bytes, *, within: Transaction | None = None) -> None:
        check_channel_name(channel)
        if within is not None:
            within.after_commit(lambda: self.broadcast(channel, payload))
            return
        with self._condition:
            self._check_open()
            subscribers = list(self._subscriptions.get(channel, ()))
        for subscription in subscribers:
            subscription.deliver(bytes(payload))

    def subscribe(self, channel: str) -> Subscription:
        check_channel_name(channel)
        with self._condition:
            self._check_open()
            subscription = _MemorySubscription(lambda s: self._unsubscribe(channel, s))
            self._subscriptions.setdefault(channel, set()).add(subscription)
            return subscription

    def _unsubscribe(self, channel: str, subscription: _MemorySubscription) -> None:
        with self._condition:
            self._subscriptions.get(channel, set()).discard(subscription)

    def wake(self) -> None:
        with self._condition:
            self._wakes += 1
            self._condition.notify_all()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    # -- internals (callers hold the condition) ------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerError("the in-memory broker is closed", recoverable=False)

    def _queue(self, queue: str) -> dict[int, _Message]:
        self._check_open()
        try:
            return self._queues[queue]
        except KeyError:
            raise BrokerError(
                f"queue {queue!r} does not exist: call ensure_queue({queue!r}) first",
                recoverable=False,
            ) from None

    def _take(self, queue: str, max_messages: int, visibility_timeout: float) -> list[Delivery]:
        now = time.monotonic()
        deliveries: list[Delivery] = []
        for message in list(self._queue(queue).values()):
            if len(deliveries) >= max_messages:
                break
            if message.visible_at > now:
                continue
            if message.deliveries >= self.max_deliveries:
                reason = f"not acknowledged after {message.deliveries} deliveries"
                self._bury(queue, message, reason)
                continue
            message.deliveries += 1
            message.visible_at = now + visibility_timeout
            deliveries.append(Delivery(queue, message.body, message.deliveries, message.message_id))
        return deliveries

    def _next_visible(self, queue: str) -> float:
        return min((m.visible_at for m in self._queue(queue).values()), default=float("inf"))

    def _bury(self, queue: str, message: _Message, reason: str) -> None:
        letter = DeadLetter(
            source_queue=queue,
            reason=reason,
            delivery_count=message.deliveries,
            body=message.body.decode(),
        )
        self.send(dead_letter_queue(queue), msgspec.json.encode(letter))  # raises if missing
        self._queue(queue).pop(message.message_id)

    def _set_visible_at(self, delivery: Delivery, visible_at: float) -> None:
        with self._condition:
            message = self._queue(delivery.queue).get(delivery.receipt)
            if message is not None:
                message.visible_at = visible_at
                self._condition.notify_all()


class _MemorySubscription(Subscription):
    """Payloads broadcast since subscribing, waiting to be received."""

    def __init__(self, on_close: Callable[[_MemorySubscription], None]) -> None:
        self._arrived: deque[bytes] = deque()
        self._condition = threading.Condition()
        self._on_close = on_close

    def deliver(self, payload: bytes) -> None:
        with self._condition:
            self._arrived.append(payload)
            self._condition.notify_all()

    def receive(self, timeout: float) -> list[bytes]:
        with self._condition:
            self._condition.wait_for(lambda: bool(self._arrived), max(timeout, 0.0))
            payloads = list(self._arrived)
            self._arrived.clear()
            return payloads

    def close(self) -> None:
        self._on_close(self)
