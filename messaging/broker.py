"""The Broker interface: the only way the orchestrator and workers reach each other.

A backend moves opaque message bodies (bytes holding msgspec-encoded JSON) between named
queues with at-least-once delivery. A body comes back equal as JSON, not necessarily byte
for byte (PGMQ stores jsonb, which normalises whitespace and key order). No pika or
psycopg type crosses this interface: a received message carries an opaque receipt that
only its own backend understands.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec

# Channel names fit PostgreSQL's identifier limit and RabbitMQ's exchange names alike.
_CHANNEL_NAME = re.compile(r"[a-z0-9_]{1,40}")


class Transaction(Protocol):
    """A database transaction a broker may join (implemented by `state`'s unit of work).

    A transactional backend (PGMQ) runs its SQL inside it, so a state change and the message
    it causes commit or roll back together. Other backends defer their work to after commit.
    """

    def execute_sql(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run one statement in the transaction and return its rows."""
        ...

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the transaction has committed (never if it rolls back)."""
        ...


class Delivery(msgspec.Struct, frozen=True):
    """One received message. `receipt` is opaque outside the backend that produced it."""

    queue: str
    body: bytes
    delivery_count: int
    receipt: Any


class QueueStats(msgspec.Struct, frozen=True):
    """Depth of a queue: messages visible now (`ready`), and the rest (`in_flight`): received
    but not yet acknowledged, or still delayed."""

    queue: str
    ready: int
    in_flight: int


class DeadLetter(msgspec.Struct, frozen=True):
    """What a dead-letter queue holds: the original body, where it came from, and why.

    `delivery_count` is how many times consumers received the message; one dead-lettered
    for exceeding `max_deliveries` therefore carries exactly `max_deliveries`.
    """

    source_queue: str
    reason: str
    delivery_count: int
    body: str


def check_channel_name(channel: str) -> str:
    """Return `channel` if every backend can name a broadcast channel after it."""
    if not _CHANNEL_NAME.fullmatch(channel):
        raise BrokerError(
            f"invalid broadcast channel {channel!r}: use 1-40 lowercase letters, digits and "
            "underscores",
            recoverable=False,
        )
    return channel


def dead_letter_queue(queue: str) -> str:
    """The dead-letter queue that belongs to `queue`."""
    return f"{queue}_dlq"


class Broker(abc.ABC):
    """At-least-once queues. Thread-safe: backends keep per-thread connections internally."""

    #: True when `within=` joins the database transaction itself (the outbox for free);
    #: False when the backend acts after commit and a sweeper must cover a lost publish.
    transactional: bool = False

    def __init__(self, *, max_deliveries: int = 5) -> None:
        # A message delivered this many times without an ack is dead-lettered, not retried.
        self.max_deliveries = max_deliveries

    @abc.abstractmethod
    def ensure_queue(self, queue: str) -> None:
        """Create `queue` (and its dead-letter queue) if missing. Idempotent."""

    @abc.abstractmethod
    def send_batch(
        self,
        queue: str,
        bodies: Sequence[bytes],
        *,
        delay: float = 0.0,
        within: Transaction | None = None,
    ) -> None:
        """Enqueue `bodies` in order, invisible for `delay` seconds.

        With `within`, the messages become visible only if that transaction commits.
        """

    def send(
        self,
        queue: str,
        body: bytes,
        *,
        delay: float = 0.0,
        within: Transaction | None = None,
    ) -> None:
        """Enqueue one message (see `send_batch`)."""
        self.send_batch(queue, [body], delay=delay, within=within)

    @abc.abstractmethod
    def receive(
        self,
        queue: str,
        *,
        max_messages: int = 1,
        visibility_timeout: float = 30.0,
        wait: float = 0.0,
    ) -> list[Delivery]:
        """Take up to `max_messages`, hidden from other consumers for `visibility_timeout`.

        Blocks up to `wait` seconds when the queue is empty, waking as soon as a message
        arrives. A message over `max_deliveries` is dead-lettered instead of returned.
        """

    @abc.abstractmethod
    def ack(self, delivery: Delivery, *, within: Transaction | None = None) -> None:
        """Remove a processed message for good (after `within` commits, if given)."""

    def ack_many(
        self, deliveries: Sequence[Delivery], *, within: Transaction | None = None
    ) -> None:
        """`ack` each delivery; a backend may remove them all with one call."""
        for delivery in deliveries:
            self.ack(delivery, within=within)

    @abc.abstractmethod
    def ack_with_reply(self, delivery: Delivery, queue: str, body: bytes) -> None:
        """Send `body` to `queue` and ack `delivery`: atomically where the backend can.

        Where it cannot, the reply is confirmed before the ack, so a crash between the two
        repeats the reply (at least once) rather than losing it.
        """

    def ack_with_replies(self, queue: str, replies: Sequence[tuple[Delivery, bytes]]) -> None:
        """`ack_with_reply` for several deliveries, each with its reply to `queue`.

        A backend may do them all in one transaction (all or none); by default each pair
        is done in turn, and a failure leaves the pairs after it undone.
        """
        for delivery, body in replies:
            self.ack_with_reply(delivery, queue, body)

    def send_batch_and_ack(
        self,
        queue: str,
        bodies: Sequence[bytes],
        deliveries: Sequence[Delivery],
        *,
        within: Transaction | None = None,
    ) -> None:
        """`send_batch(queue, bodies)`, then `ack_many(deliveries)`, both `within` the
        caller's transaction when given. A backend may do both in one call."""
        self.send_batch(queue, bodies, within=within)
        self.ack_many(deliveries, within=within)

    def database_message_ids(self, deliveries: Sequence[Delivery]) -> tuple[str, list[int]] | None:
        """`deliveries` as rows of the state database: their one queue and message ids, for
        SQL that acks them itself (PGMQ's queues are tables there). None for a backend whose
        queues live elsewhere, or deliveries from more than one queue."""
        return None

    @abc.abstractmethod
    def nack(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        """Give the message back to the queue, visible again after `delay` seconds."""

    @abc.abstractmethod
    def extend_visibility(self, delivery: Delivery, seconds: float) -> None:
        """Keep a message being worked on hidden for `seconds` more from now."""

    @abc.abstractmethod
    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a message that can never be processed to the dead-letter queue, with why."""

    @abc.abstractmethod
    def queue_stats(self, queue: str) -> QueueStats:
        """Current depth of `queue`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. The broker is unusable afterwards."""

    def wake(self) -> None:  # noqa: B027 - optional hook with a no-op default
        """Interrupt blocked `receive` calls so consumers can notice a shutdown promptly."""

    # -- control notices ---------------------------------------------------------------

    @abc.abstractmethod
    def broadcast(self, channel: str, payload: bytes, *, within: Transaction | None = None) -> None:
        """Publish `payload` to every current subscriber of `channel` (see `Subscription`).

        With `within`, it is published only if that transaction commits.
        """

    @abc.abstractmethod
    def subscribe(self, channel: str) -> Subscription:
        """Start hearing `channel`'s broadcasts, from the moment this returns."""


class Subscription(abc.ABC):
    """A listener for one channel's broadcasts, used by one thread.

    Broadcasts are control notices, not work: each reaches the subscribers listening when
    it is sent, at most once, and is lost to a subscriber that is reconnecting. Whatever
    rests on them must stay correct without them (they only save wasted work).
    """

    @abc.abstractmethod
    def receive(self, timeout: float) -> list[bytes]:
        """Payloads that arrived since the last call, waiting up to `timeout` for one."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop listening and release the connection."""


class BrokerError(Exception):
    """A broker operation failed; `recoverable` says whether retrying later can succeed."""

    def __init__(self, message: str, *, recoverable: bool = True) -> None:
        super().__init__(message)
        self.recoverable = recoverable
