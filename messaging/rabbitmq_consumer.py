"""The fast path of the RabbitMQ backend: long-lived consumers and the deliveries they hold.

Each link (one thread's connection, see `rabbitmq_connection`) keeps one consumer per queue
it receives from, registered on first use and kept across `receive` calls. Deliveries are
pushed by RabbitMQ into a local buffer; `receive` hands them out and they stay ordinary
unacked deliveries on that channel until settled (`held`). The prefetch of a consumer is
what its caller holds plus what it asks for, so the buffer never outgrows the request.
RabbitMQ fixes a consumer's prefetch when it is registered, so a larger request
re-registers the consumer (its buffer and unacked deliveries stay valid); a smaller one
keeps the larger prefetch.

`maintain` enforces what RabbitMQ cannot: a held delivery whose visibility timeout passed
is nacked back to the queue (the quorum queue counts the redelivery), and one held longer
than `lease_after` is moved to the slow path -- a confirmed copy in a lease queue, then an
ack -- so RabbitMQ's consumer timeout never closes the channel under a long-running step.
Deliveries buffered that long (their thread stopped calling `receive`) are given back to
the queue, uncounted, and the consumer stops until the next `receive`.
Everything here runs with the link's `busy` lock held; receipts have locks of their own,
which code holding `busy` only ever tries (never waits for), so the two cannot deadlock.
"""

from __future__ import annotations

import collections
import enum
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from . import rabbitmq_operations as ops
from . import rabbitmq_topology as topo

if TYPE_CHECKING:
    from .rabbitmq_connection import Link

_MAX_PREFETCH = 65_535
_RETRY_LOCKED = 0.01  # when a receipt is being settled meanwhile, look again this soon


class State(enum.Enum):
    HELD = "held"  # an unacked delivery on its link's channel
    LEASED = "leased"  # acked; a copy waits in a lease queue (the slow path)
    EXPIRED = "expired"  # its visibility timeout passed: nacked back to the queue
    SETTLED = "settled"  # acked, nacked or dead-lettered by the caller


class Receipt:
    """The opaque receipt of one received message."""

    __slots__ = (
        "arrived",
        "body",
        "deadline",
        "delivery_count",
        "lease_queue",
        "link",
        "lock",
        "queue",
        "state",
        "tag",
    )

    def __init__(
        self,
        queue: str,
        body: bytes,
        delivery_count: int,
        link: Link,
        tag: int,
        arrived: float,
        deadline: float,
    ) -> None:
        self.queue = queue
        self.body = body
        self.delivery_count = delivery_count
        self.link = link
        self.tag = tag
        self.arrived = arrived  # when RabbitMQ's consumer-timeout clock started
        self.deadline = deadline  # end of the visibility timeout (monotonic)
        self.state = State.HELD
        self.lease_queue = ""
        self.lock = threading.Lock()  # settle/extend/maintain may race across threads

    @property
    def stale(self) -> bool:
        """Held on a connection since lost: RabbitMQ has already requeued it."""
        return self.state is State.HELD and not self.link.alive


class Buffered(NamedTuple):
    tag: int
    properties: Any
    body: bytes
    arrived: float


class QueueConsumer:
    """One registered consumer and the deliveries it received but `receive` did not
    hand out yet."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.tag: str | None = None
        self.prefetch = 0
        self.buffer: collections.deque[Buffered] = collections.deque()

    def on_message(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self.buffer.append(Buffered(method.delivery_tag, properties, body, time.monotonic()))

    def take(self, limit: int) -> list[Buffered]:
        return [self.buffer.popleft() for _ in range(min(limit, len(self.buffer)))]


class LinkConsumers:
    """The consumers of one link and the deliveries held from them."""

    def __init__(self) -> None:
        self.by_queue: dict[str, QueueConsumer] = {}
        self.held: dict[int, Receipt] = {}  # delivery tag -> receipt, until settled

    @property
    def holding(self) -> bool:
        return bool(self.held)

    def held_for(self, queue: str) -> int:
        return sum(1 for receipt in list(self.held.values()) if receipt.queue == queue)

    def buffered_for(self, queue: str) -> int:
        consumer = self.by_queue.get(queue)
        return len(consumer.buffer) if consumer is not None else 0

    def on_cancelled(self, frame: Any) -> None:
        """RabbitMQ cancelled a consumer (its queue was deleted): register anew next time."""
        for consumer in list(self.by_queue.values()):
            if consumer.tag == frame.method.consumer_tag:
                consumer.tag, consumer.prefetch = None, 0

    def forget(self) -> None:
        """The connection is gone, and with it every buffered and held delivery."""
        self.by_queue = {}
        self.held = {}

    def ensure(self, link: Link, queue: str, limit: int) -> QueueConsumer:
        """The consumer of `queue`, registered with room for `limit` more deliveries."""
        consumer = self.by_queue.setdefault(queue, QueueConsumer(queue))
        wanted = min(_MAX_PREFETCH, limit + self.held_for(queue))
        if consumer.tag is not None and wanted <= consumer.prefetch:
            return consumer
        if consumer.tag is not None:
            link.pump(0)  # buffer what already arrived: cancelling would requeue it
            link.channel.basic_cancel(consumer.tag)
        link.channel.basic_qos(prefetch_count=wanted)
        consumer.tag = link.channel.basic_consume(queue, consumer.on_message)
        consumer.prefetch = wanted
        return consumer

    def collect(
        self,
        link: Link,
        queue: str,
        limit: int,
        until: float,
        stop: Callable[[], bool],
        maintain: Callable[[], float],
    ) -> list[Buffered]:
        """Up to `limit` deliveries of `queue`, waiting until `until` (or `stop()`) for the
        first; returns as soon as one arrives, without polling."""
        consumer = self.ensure(link, queue, limit)
        link.pump(0)
        try:
            while True:
                due = maintain()
                if consumer.tag is None:  # cancelled by RabbitMQ or released
                    consumer = self.ensure(link, queue, limit)
                if consumer.buffer:
                    if len(consumer.buffer) < limit:
                        link.pump(0)  # the rest of a burst already on the socket
                    return consumer.take(limit)
                now = time.monotonic()
                if now >= until or stop():
                    break
                link.attended_until = min(until, due)
                link.pump(link.attended_until - now)
        finally:
            link.attended_until = 0.0
        # Empty-handed: look directly once, for messages a just-registered consumer was
        # not pushed yet. Frames arrive in order, so pushes sent before the get's reply
        # are on the socket by now; pump them into the buffer too.
        arrived = time.monotonic()
        for method, properties, body in ops.get_ready(link.channel, queue, limit):
            consumer.buffer.append(Buffered(method.delivery_tag, properties, body, arrived))
        link.pump(0)
        return consumer.take(limit)

    def maintain(
        self, link: Link, now: float, lease_after: float, on_leased: Callable[[Receipt], None]
    ) -> float:
        """Expire and lease held deliveries that are due; return when next to look."""
        due = math.inf
        for receipt in list(self.held.values()):
            if receipt.state is not State.HELD:
                continue  # settled; its settlement is queued on this link
            if not receipt.lock.acquire(blocking=False):
                due = min(due, now + _RETRY_LOCKED)
                continue
            try:
                if receipt.state is not State.HELD:
                    continue
                if now >= receipt.deadline:
                    link.channel.basic_nack(receipt.tag, requeue=True)
                    receipt.state = State.EXPIRED
                    del self.held[receipt.tag]
                elif now >= receipt.arrived + lease_after:
                    _lease(link, receipt, now)
                    del self.held[receipt.tag]
                    on_leased(receipt)
                else:
                    due = min(due, receipt.deadline, receipt.arrived + lease_after)
            finally:
                receipt.lock.release()
        for consumer in list(self.by_queue.values()):
            if consumer.buffer and now >= consumer.buffer[0].arrived + lease_after:
                _give_back(link, consumer)  # nobody asked for them for that long
            elif consumer.buffer:
                due = min(due, consumer.buffer[0].arrived + lease_after)
        return due

    def give_back(self, link: Link) -> None:
        """Stop every consumer and return what they buffered, uncounted (at close)."""
        for consumer in list(self.by_queue.values()):
            _give_back(link, consumer)


def _lease(link: Link, receipt: Receipt, now: float) -> None:
    """Move a held delivery to the slow path: confirmed copy first, then the ack."""
    ttl_ms = topo.to_ttl_ms(max(receipt.deadline - now, 0.001))
    receipt.lease_queue = ops.lease(
        link.channel, receipt.queue, receipt.body, receipt.delivery_count, ttl_ms
    )
    link.channel.basic_ack(receipt.tag)
    receipt.state = State.LEASED


def _give_back(link: Link, consumer: QueueConsumer) -> None:
    """Stop consuming and return the buffer to the queue without counting a delivery:
    a confirmed copy with the count so far, then an ack (a nack would count one more)."""
    if consumer.tag is not None:
        link.channel.basic_cancel(consumer.tag)
    consumer.tag, consumer.prefetch = None, 0
    while consumer.buffer:
        item = consumer.buffer[0]
        count = topo.previous_deliveries(item.properties)
        ops.republish(link.channel, consumer.queue, item.body, count, 0.0)
        link.channel.basic_ack(item.tag)
        consumer.buffer.popleft()
