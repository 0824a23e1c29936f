"""RabbitMQ backend: durable queues, persistent messages, publisher confirms, via pika.

RabbitMQ has no visibility timeout and closes a channel that keeps a delivery unacked past
its `consumer_timeout` (30 min by default), while a step may run longer. So this backend
never keeps a delivery unacked: `receive` takes ownership of each message at once by
copying it, confirmed, into a *lease queue* whose TTL is the visibility timeout, and only
then acks the original. Settling the message (ack, nack, dead-letter) deletes the lease
queue; if nobody settles it in time -- the worker died, or is merely slow -- RabbitMQ
dead-letters the copy back into the main queue, where it is delivered again with its
delivery count one higher. `extend_visibility` moves the copy to a fresh lease queue.
Delays use per-delay TTL queues that dead-letter into the main queue the same way. See
`rabbitmq_topology` for the queue layout and `rabbitmq_connection` for reconnecting.

Consequences: receipts are not tied to a channel (any thread can settle any delivery, and
a dropped connection loses no in-flight work); each received message costs a queue
declare and a confirmed publish, and each settlement a queue delete.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from . import rabbitmq_operations as ops
from . import rabbitmq_topology as topo
from .broker import (
    Broker,
    BrokerError,
    Delivery,
    QueueStats,
    Transaction,
    dead_letter_queue,
)
from .rabbitmq_connection import ThreadLinks

log = logging.getLogger(__name__)


class _Lease:
    """The receipt of one received message: the lease queue holding its copy."""

    def __init__(self, queue: str, lease_queue: str, body: bytes, delivery_count: int) -> None:
        self.queue = queue
        self.lease_queue = lease_queue
        self.body = body
        self.delivery_count = delivery_count
        self.settled = False
        self.lock = threading.Lock()  # settle/extend may race from different threads


class RabbitMQBroker(Broker):
    """At-least-once queues on RabbitMQ; `within=` acts after the transaction commits."""

    transactional = False

    def __init__(
        self,
        url: str,
        *,
        max_deliveries: int = 5,
        reconnect_timeout: float = 30.0,
        connection_name: str | None = None,
    ) -> None:
        super().__init__(max_deliveries=max_deliveries)
        self.connection_name = connection_name or f"tasker pid={os.getpid()}"
        self._links = ThreadLinks(
            url, retry_for=reconnect_timeout, connection_name=self.connection_name
        )
        self._leases_lock = threading.Lock()
        self._leases: dict[str, set[str]] = {}  # queue -> lease queues this instance holds

    # -- queues and sending -------------------------------------------------------------

    def ensure_queue(self, queue: str) -> None:
        topo.validate_queue_name(queue)

        def declare(channel: Any) -> None:
            channel.queue_declare(queue, durable=True)
            channel.queue_declare(dead_letter_queue(queue), durable=True)

        self._links.run(f"ensure_queue({queue!r})", declare)

    def send_batch(
        self,
        queue: str,
        bodies: Sequence[bytes],
        *,
        delay: float = 0.0,
        within: Transaction | None = None,
    ) -> None:
        topo.validate_queue_name(queue)
        topo.to_ttl_ms(delay)  # reject a bad delay now, not after the commit
        publish = functools.partial(self._publish, queue, list(bodies), delay=delay)
        if within is not None:
            within.after_commit(publish)
        else:
            publish()

    def _publish(self, queue: str, bodies: list[bytes], *, delay: float, previous: int = 0) -> None:
        """Publish `bodies` in order, each confirmed; a retry resumes after the last
        confirmed one, so a reconnect repeats at most the message it interrupted."""
        sent = 0
        properties = topo.message_properties(previous)

        def publish(channel: Any) -> None:
            nonlocal sent
            target = ops.route(channel, queue, delay)
            while sent < len(bodies):
                channel.basic_publish("", target, bodies[sent], properties, mandatory=True)
                sent += 1

        if bodies:
            self._links.run(f"send to {queue!r}", publish)

    # -- receiving ----------------------------------------------------------------------

    def receive(
        self,
        queue: str,
        *,
        max_messages: int = 1,
        visibility_timeout: float = 30.0,
        wait: float = 0.0,
    ) -> list[Delivery]:
        topo.validate_queue_name(queue)
        if max_messages < 1:
            raise BrokerError(f"max_messages must be >= 1, not {max_messages}", recoverable=False)
        ttl_ms = topo.to_ttl_ms(visibility_timeout)
        deadline = time.monotonic() + max(wait, 0.0)
        generation = self._links.wake_generation
        take = functools.partial(self._take, queue, max_messages, ttl_ms, deadline, generation)
        while True:
            deliveries = self._links.run(f"receive from {queue!r}", take)
            # Empty-handed after dead-lettering poison messages: keep waiting if time is left.
            if deliveries or time.monotonic() >= deadline or self._links.woken(generation):
                return deliveries

    def _take(
        self, queue: str, limit: int, ttl_ms: int, deadline: float, generation: int, channel: Any
    ) -> list[Delivery]:
        def stop() -> bool:
            return time.monotonic() >= deadline or self._links.woken(generation)

        raw = ops.get_ready(channel, queue, limit)
        if not raw and not stop():
            raw = ops.await_messages(channel, queue, limit, deadline, stop)
        owned = (self._own(channel, queue, message, ttl_ms) for message in raw)
        return [delivery for delivery in owned if delivery is not None]

    def _own(
        self, channel: Any, queue: str, message: ops.RawMessage, ttl_ms: int
    ) -> Delivery | None:
        """Take ownership of a delivery: lease it (or dead-letter it), then ack it."""
        method, properties, body = message
        previous = topo.previous_deliveries(properties)
        if previous >= self.max_deliveries:
            reason = f"delivered {previous} times (max_deliveries) without being acked"
            ops.publish_dead_letter(channel, queue, body, previous, reason)
            channel.basic_ack(method.delivery_tag)
            log.warning("dead-lettered a message from %r: %s", queue, reason)
            return None
        count = previous + 1
        lease_queue = ops.lease(channel, queue, body, count, ttl_ms)
        channel.basic_ack(method.delivery_tag)
        self._track(queue, add=lease_queue)
        return Delivery(queue, body, count, _Lease(queue, lease_queue, body, count))

    # -- settling -----------------------------------------------------------------------

    def ack(self, delivery: Delivery, *, within: Transaction | None = None) -> None:
        if within is not None:
            within.after_commit(functools.partial(self.ack, delivery))
            return
        lease = _lease_of(delivery)
        with lease.lock:
            if not lease.settled:  # acking twice is harmless
                self._release(lease)

    def ack_with_reply(self, delivery: Delivery, queue: str, body: bytes) -> None:
        topo.validate_queue_name(queue)
        lease = _unsettled(delivery)
        with lease.lock:
            _check_unsettled(lease)
            self._publish(queue, [body], delay=0.0)  # confirmed before the ack
            self._release(lease)

    def nack(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        lease = _unsettled(delivery)
        with lease.lock:
            _check_unsettled(lease)
            self._publish(lease.queue, [lease.body], delay=delay, previous=lease.delivery_count)
            self._release(lease)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        lease = _unsettled(delivery)
        with lease.lock:
            _check_unsettled(lease)
            self._links.run(
                f"dead-letter from {lease.queue!r}",
                lambda channel: ops.publish_dead_letter(
                    channel, lease.queue, lease.body, lease.delivery_count, reason
                ),
            )
            self._release(lease)

    def extend_visibility(self, delivery: Delivery, seconds: float) -> None:
        ttl_ms = topo.to_ttl_ms(seconds)
        lease = _unsettled(delivery)
        with lease.lock:
            _check_unsettled(lease)
            old = lease.lease_queue
            # New copy first, then drop the old: a crash in between duplicates, never loses.
            lease.lease_queue = self._links.run(
                f"extend visibility in {lease.queue!r}",
                lambda ch: ops.lease(ch, lease.queue, lease.body, lease.delivery_count, ttl_ms),
            )
            self._track(lease.queue, add=lease.lease_queue, remove=old)
            if self._delete_lease(lease.queue, old) == 0:
                self._release(lease)  # the message is already back in the queue
                raise BrokerError(
                    f"visibility timeout of a message from {lease.queue!r} expired before "
                    "it was extended; it is back in the queue and will be delivered again",
                    recoverable=False,
                )

    def _release(self, lease: _Lease) -> None:
        """Delete the lease (caller holds `lease.lock`): the message is settled."""
        remaining = self._delete_lease(lease.queue, lease.lease_queue)
        lease.settled = True
        self._track(lease.queue, remove=lease.lease_queue)
        if remaining == 0:
            log.warning(
                "a message from %r was settled after its visibility timeout expired; "
                "it was already returned to the queue and may be processed again",
                lease.queue,
            )

    def _delete_lease(self, queue: str, lease_queue: str) -> int:
        """Delete a lease queue; return how many copies it still held (0: expired)."""
        result = self._links.run(
            f"settle a message from {queue!r}", lambda ch: ch.queue_delete(lease_queue)
        )
        return int(result.method.message_count)

    def _track(self, queue: str, *, add: str | None = None, remove: str | None = None) -> None:
        with self._leases_lock:
            held = self._leases.setdefault(queue, set())
            if add is not None:
                held.add(add)
            held.discard(remove or "")

    # -- operations ---------------------------------------------------------------------

    def queue_stats(self, queue: str) -> QueueStats:
        """`ready` counts the main queue only (not delayed messages); `in_flight` counts
        the leases held by *this* broker instance, not those of other processes."""
        topo.validate_queue_name(queue)
        declared = self._links.run(
            f"queue_stats({queue!r})", lambda ch: ch.queue_declare(queue, passive=True)
        )
        with self._leases_lock:
            in_flight = len(self._leases.get(queue, ()))
        return QueueStats(queue, ready=int(declared.method.message_count), in_flight=in_flight)

    def wake(self) -> None:
        self._links.wake_all()

    def close(self) -> None:
        self._links.close_all()


def _lease_of(delivery: Delivery) -> _Lease:
    if not isinstance(delivery.receipt, _Lease):
        raise BrokerError(
            f"delivery from {delivery.queue!r} was not received from a RabbitMQ broker",
            recoverable=False,
        )
    return delivery.receipt


def _unsettled(delivery: Delivery) -> _Lease:
    lease = _lease_of(delivery)
    _check_unsettled(lease)
    return lease


def _check_unsettled(lease: _Lease) -> None:
    if lease.settled:
        raise BrokerError(
            f"a message from {lease.queue!r} was already acked, nacked or dead-lettered",
            recoverable=False,
        )
