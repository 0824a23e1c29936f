"""Settling RabbitMQ deliveries: ack, nack, dead-letter and extend, from any thread.

A held delivery (the fast path, see `rabbitmq_consumer`) is settled by one `basic_ack` or
`basic_nack` on the channel it came from, handed to that channel's link; any message the
settlement publishes (a reply, a delayed copy, a dead letter) is published and confirmed
first, on the calling thread's own channel. A leased delivery (the slow path) is settled
by deleting its lease queue. A receipt whose visibility timeout expired, or whose
connection was lost, is already back in the queue: settling it only logs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from . import rabbitmq_operations as ops
from .broker import BrokerError, Delivery
from .rabbitmq_connection import Link, ThreadLinks
from .rabbitmq_consumer import Receipt, State

log = logging.getLogger(__name__)


class Settler:
    """Settles receipts of one broker; also counts its deliveries on the slow path."""

    def __init__(
        self,
        links: ThreadLinks,
        publish: Callable[[str, bytes], None],
        due: Callable[[Link, float], None],
    ) -> None:
        self._links = links
        self._publish = publish  # confirmed publish on the caller's own link
        self._due = due  # tells the link's maintenance when a receipt is next due
        self._leased_lock = threading.Lock()
        self._leased: dict[str, int] = {}  # queue -> deliveries on the slow path

    def ack(self, delivery: Delivery) -> None:
        receipt = receipt_of(delivery)
        with receipt.lock:
            if receipt.state is not State.SETTLED:  # acking twice is harmless
                self._finish(receipt)

    def ack_with_reply(self, delivery: Delivery, queue: str, body: bytes) -> None:
        receipt = _unsettled(delivery)
        with receipt.lock:
            _check_unsettled(receipt)
            self._publish(queue, body)  # confirmed before the ack
            self._finish(receipt)

    def nack(self, delivery: Delivery, delay: float) -> None:
        receipt = _unsettled(delivery)
        with receipt.lock:
            _check_unsettled(receipt)
            if receipt.state is State.HELD and not receipt.stale and delay <= 0:
                receipt.state = State.SETTLED  # the quorum queue counts the redelivery
                _on_owner(receipt, lambda channel: channel.basic_nack(receipt.tag, requeue=True))
                return
            if receipt.state is not State.EXPIRED and not receipt.stale:
                self._links.run(
                    f"nack to {receipt.queue!r}",
                    lambda link: ops.republish(
                        link.channel, receipt.queue, receipt.body, receipt.delivery_count, delay
                    ),
                )
            self._finish(receipt)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        receipt = _unsettled(delivery)
        with receipt.lock:
            _check_unsettled(receipt)
            self._links.run(
                f"dead-letter from {receipt.queue!r}",
                lambda link: ops.publish_dead_letter(
                    link.channel, receipt.queue, receipt.body, receipt.delivery_count, reason
                ),
            )
            self._finish(receipt)

    def extend(self, delivery: Delivery, seconds: float, ttl_ms: int) -> None:
        receipt = _unsettled(delivery)
        with receipt.lock:
            _check_unsettled(receipt)
            if receipt.state is State.HELD and not receipt.stale:
                receipt.deadline = time.monotonic() + seconds
                self._due(receipt.link, receipt.deadline)
                return
            if receipt.state is State.LEASED:
                self._renew_lease(receipt, ttl_ms)
                return
            self._finish(receipt)
            raise _expired(receipt)

    def on_leased(self, receipt: Receipt) -> None:
        """Called by link maintenance once a delivery moved to the slow path."""
        self._count_lease(receipt.queue, +1)
        log.info("a message from %r moved to lease queue %s", receipt.queue, receipt.lease_queue)

    def leased(self, queue: str) -> int:
        with self._leased_lock:
            return self._leased.get(queue, 0)

    def _finish(self, receipt: Receipt) -> None:
        """Settle for good (receipt lock held): ack on its own channel, or end its lease."""
        state, stale = receipt.state, receipt.stale
        receipt.state = State.SETTLED
        if state is State.LEASED:
            self._count_lease(receipt.queue, -1)
            if self._delete_lease(receipt.queue, receipt.lease_queue) == 0:
                _log_late(receipt)
        elif state is State.EXPIRED:
            _log_late(receipt)
        elif stale:
            _log_stale(receipt)
        else:
            _on_owner(receipt, lambda channel: channel.basic_ack(receipt.tag))

    def _renew_lease(self, receipt: Receipt, ttl_ms: int) -> None:
        """New lease copy first, then drop the old: a crash between duplicates, never loses."""
        old = receipt.lease_queue
        receipt.lease_queue = self._links.run(
            f"extend visibility in {receipt.queue!r}",
            lambda link: ops.lease(
                link.channel, receipt.queue, receipt.body, receipt.delivery_count, ttl_ms
            ),
        )
        if self._delete_lease(receipt.queue, old) == 0:
            self._finish(receipt)  # the message is already back in the queue
            raise _expired(receipt)

    def _delete_lease(self, queue: str, lease_queue: str) -> int:
        """Delete a lease queue; return how many copies it still held (0: expired)."""
        result = self._links.run(
            f"settle a message from {queue!r}", lambda link: link.channel.queue_delete(lease_queue)
        )
        return int(result.method.message_count)

    def _count_lease(self, queue: str, change: int) -> None:
        with self._leased_lock:
            self._leased[queue] = self._leased.get(queue, 0) + change


def _on_owner(receipt: Receipt, operation: Callable[[Any], None]) -> None:
    """Run `operation(channel)` on the channel the delivery came from, from any thread."""
    link = receipt.link

    def action() -> None:
        if not link.alive:
            _log_stale(receipt)
            return
        link.consumers.held.pop(receipt.tag, None)
        operation(link.channel)

    link.submit(action)


def _expired(receipt: Receipt) -> BrokerError:
    return BrokerError(
        f"visibility timeout of a message from {receipt.queue!r} expired (or its connection "
        "was lost) before it was extended; it is back in the queue and will be delivered "
        "again",
        recoverable=False,
    )


def _log_late(receipt: Receipt) -> None:
    log.warning(
        "a message from %r was settled after its visibility timeout expired; it was "
        "already returned to the queue and may be processed again",
        receipt.queue,
    )


def _log_stale(receipt: Receipt) -> None:
    log.warning(
        "a message from %r was settled after the connection it came on was lost; "
        "RabbitMQ returned it to the queue and will deliver it again",
        receipt.queue,
    )


def receipt_of(delivery: Delivery) -> Receipt:
    if not isinstance(delivery.receipt, Receipt):
        raise BrokerError(
            f"delivery from {delivery.queue!r} was not received from a RabbitMQ broker",
            recoverable=False,
        )
    return delivery.receipt


def _unsettled(delivery: Delivery) -> Receipt:
    receipt = receipt_of(delivery)
    _check_unsettled(receipt)
    return receipt


def _check_unsettled(receipt: Receipt) -> None:
    if receipt.state is State.SETTLED:
        raise BrokerError(
            f"a message from {receipt.queue!r} was already acked, nacked or dead-lettered",
            recoverable=False,
        )
