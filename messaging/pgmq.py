"""PGMQ backend: queues are tables in the state database, so sends can join its transactions.

Bodies are stored as jsonb. They go in as text cast to jsonb and come out as `message::text`,
so psycopg never parses them; PostgreSQL does normalise them (key order, whitespace), so a
body comes back equal as JSON, not byte for byte.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec
import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolClosed

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
from tasker.messaging.pg_notices import NoticeHub
from tasker.messaging.pgmq_broadcast import (
    NOTIFY,
    PgmqSubscription,
    check_notice_size,
    notice_channel,
)
from tasker.messaging.pgmq_install import install_pgmq
from tasker.messaging.pgmq_listener import Mark, QueueListener, insert_channel

log = logging.getLogger(__name__)

# PGMQ lower-cases names and builds table names from them, capped at 47 characters; a
# queue made by ensure_queue leaves room for its dead-letter queue's "_dlq".
_QUEUE_NAME = re.compile(r"[a-z0-9_]+")
_MAX_NAME = 47
_MAX_ENSURED_NAME = _MAX_NAME - len(dead_letter_queue(""))

# Named queries. Every argument is cast, so PostgreSQL picks the intended pgmq overload.
# A read only leases messages (hides them, counts the delivery), so it commits without
# waiting for the WAL flush: if the database crashes before the flush, the lease is undone
# and the messages are delivered again, which at-least-once delivery allows anyway.
# Everything that must survive a crash (sends, deletes, replies) still waits for it.
_READ = (
    "SELECT r.msg_id, r.read_ct, r.message::text"
    " FROM (SELECT set_config('synchronous_commit', 'off', true)) AS lease,"
    " pgmq.read(%s::text, %s::integer, %s::integer) AS r"
)
# Bodies of a batch travel as one JSON array (text) that PostgreSQL splits in order, not as
# a text[] parameter: psycopg escapes each element of a text array in Python, about 70 us
# per body of a step's size (a worker's batch of 8 replies took 0.55 ms of its CPU).
_BODIES = (
    "(SELECT array_agg(b.body ORDER BY b.n)"
    " FROM jsonb_array_elements(%s::text::jsonb) WITH ORDINALITY AS b(body, n))"
)
# A visibility time `%s` seconds from now (a send's delay, a lease's extension).
_SECONDS_FROM_NOW = "clock_timestamp() + make_interval(secs => %s::double precision)"


def _then_notify(send: str) -> str:
    """The statement running PGMQ call `send`, then the queue's NOTIFY (its channel last).

    Senders NOTIFY the queue's channel themselves (delivered at commit, once per
    transaction and channel), instead of PGMQ's insert trigger: that trigger UPDATEs one
    throttle row per queue on every insert, so every sending transaction held that row's
    lock until it committed, serializing all senders of a queue, and paid an extra write
    per message.
    """
    return (
        f"WITH sent AS (SELECT {send})"
        " SELECT pg_notify(%s::text, '') FROM (SELECT count(*) FROM sent) AS counted"
    )


_SEND_BATCH = _then_notify(f"pgmq.send_batch(%s::text, {_BODIES}, {_SECONDS_FROM_NOW})")
# A lone message goes through PGMQ's single send: its batch send costs about three times
# as much on the server (two more PL/pgSQL layers; migration 0018). The four-argument
# form is the one the others wrap.
_SEND_ONE = _then_notify(f"pgmq.send(%s::text, %s::text::jsonb, NULL::jsonb, {_SECONDS_FROM_NOW})")
# Send one message and delete another in one statement: one round trip, one transaction.
_SEND_AND_DELETE = (
    "SELECT pgmq.send(%s::text, %s::jsonb, NULL::jsonb, clock_timestamp()),"
    " pgmq.delete(%s::text, %s::bigint), pg_notify(%s::text, '')"
)
# A worker's reply and the ack of the delivery it answers commit like a read, without
# waiting for the WAL flush. A crash before the flush undoes both together: the delivery
# comes again, carrying the dispatch it carried (a message is readable only once the
# claim that sent it was flushed), and its step runs again, as after a crash while it
# ran, which at-least-once delivery already allows. Anything that depends on the reply
# and commits durably (the result hop) flushes it too: the WAL is flushed in order.
_REPLY_AND_ACK = (
    _SEND_AND_DELETE + " FROM (SELECT set_config('synchronous_commit', 'off', true)) AS lazy"
)
# Messages sent and the deliveries they answer deleted in one statement: one round trip
# (for a worker's replies, where BEGIN, a send, a delete and COMMIT took four).
_SEND_BATCH_AND_DELETE = (
    f"WITH sent AS (SELECT pgmq.send_batch(%s::text, {_BODIES}, clock_timestamp())),"
    " deleted AS (SELECT pgmq.delete(%s::text, %s::bigint[]))"
    " SELECT pg_notify(%s::text, '')"
    " FROM (SELECT count(*) FROM sent) AS s, (SELECT count(*) FROM deleted) AS d"
)
# The same for replies and their acks, committed like _REPLY_AND_ACK.
_REPLIES_AND_ACKS = (
    _SEND_BATCH_AND_DELETE + ", (SELECT set_config('synchronous_commit', 'off', true)) AS lazy"
)
# Delete rather than archive: the state tables already record every step's outcome, and an
# archive would grow without bound unless something pruned it.
_DELETE = "SELECT pgmq.delete(%s::text, %s::bigint)"
_DELETE_MANY = "SELECT pgmq.delete(%s::text, %s::bigint[])"
_SET_VT = f"SELECT msg_id FROM pgmq.set_vt(%s::text, %s::bigint, {_SECONDS_FROM_NOW})"
_METRICS = "SELECT queue_length, queue_visible_length FROM pgmq.metrics(%s::text)"
_QUEUE_LOCK = "SELECT pgmq.acquire_queue_lock(%s::text)"
_CREATE = "SELECT pgmq.create(%s::text)"
_INSERT_TRIGGER_PRESENT = """
SELECT EXISTS (SELECT 1 FROM pgmq.notify_insert_throttle WHERE queue_name = %s::text)
"""
# A queue made by an older version (or by hand) may carry PGMQ's insert trigger: see _SEND_BATCH.
_DROP_INSERT_TRIGGER = "SELECT pgmq.disable_notify_insert(%s::text)"


class PgmqBroker(Broker):
    """Broker on PGMQ. `within=` runs in the caller's transaction: the outbox for free."""

    transactional = True

    def __init__(
        self,
        database_url: str,
        *,
        max_deliveries: int = 5,
        poll_interval: float = 1.0,
        pool_size: int = 4,
    ) -> None:
        super().__init__(max_deliveries=max_deliveries)
        self.database_url = database_url
        # A waiting receive re-reads at least this often, covering messages that become
        # visible without an insert (delays, expired leases) and any missed notification.
        self.poll_interval = poll_interval
        self._pool_size = pool_size
        self._pool: ConnectionPool[psycopg.Connection[TupleRow]] | None = None
        self._listeners: dict[str, QueueListener] = {}
        self._notices: NoticeHub | None = None  # one LISTEN connection for every channel
        # Per receiving thread and queue: the listener mark at which a read drained it.
        self._local = threading.local()
        self._lock = threading.RLock()  # re-entered: a new listener makes the notice hub
        self._closed = False

    # -- Broker interface ------------------------------------------------------------------

    def ensure_queue(self, queue: str) -> None:
        _check_queue_name(queue, max_length=_MAX_ENSURED_NAME)
        pool = self._ready_pool()
        with _translated(queue), pool.connection() as connection, connection.transaction():
            # One lock per queue (PGMQ's own) so concurrent callers neither collide on
            # CREATE TRIGGER nor needlessly drop and re-create a working trigger.
            connection.execute(_QUEUE_LOCK, (queue,))
            connection.execute(_CREATE, (queue,))
            connection.execute(_CREATE, (dead_letter_queue(queue),))
            if _fetch_flag(connection, _INSERT_TRIGGER_PRESENT, (queue,)):
                connection.execute(_DROP_INSERT_TRIGGER, (queue,))

    def send_batch(
        self,
        queue: str,
        bodies: Sequence[bytes],
        *,
        delay: float = 0.0,
        within: Transaction | None = None,
    ) -> None:
        _check_queue_name(queue)
        if not bodies:
            return
        if len(bodies) == 1:
            params = (queue, _as_text(queue, bodies[0]), max(0.0, delay), insert_channel(queue))
            self._execute(_SEND_ONE, params, queue=queue, within=within)
            return
        params = (queue, _as_json_array(queue, bodies), max(0.0, delay), insert_channel(queue))
        self._execute(_SEND_BATCH, params, queue=queue, within=within)

    def receive(
        self,
        queue: str,
        *,
        max_messages: int = 1,
        visibility_timeout: float = 30.0,
        wait: float = 0.0,
    ) -> list[Delivery]:
        """See `Broker.receive`. PGMQ leases whole seconds: the timeout is rounded up."""
        _check_queue_name(queue)
        lease = math.ceil(visibility_timeout)
        if wait <= 0:
            return self._read_live(queue, max_messages, lease)
        deadline = time.monotonic() + wait
        listener = self._listener(queue)
        drained = self._drained_marks()
        mark = drained.pop(queue, None)
        if mark is not None and listener.wait(mark, min(wait, self.poll_interval)):
            return []  # wake(): let the consumer look at its shutdown flag
        while True:
            mark = listener.mark()  # before the read, so an insert during it still wakes us
            deliveries = self._read_live(queue, max_messages, lease)
            remaining = deadline - time.monotonic()
            if deliveries or remaining <= 0:
                if len(deliveries) < max_messages:
                    # The queue was drained at `mark`: the caller's next receive waits for
                    # news since then before reading, instead of a read finding nothing.
                    drained[queue] = mark
                return deliveries
            if listener.wait(mark, min(remaining, self.poll_interval)):
                return []  # wake(): let the consumer look at its shutdown flag

    def ack(self, delivery: Delivery, *, within: Transaction | None = None) -> None:
        params = (delivery.queue, _message_id(delivery))
        self._execute(_DELETE, params, queue=delivery.queue, within=within)

    def ack_many(
        self, deliveries: Sequence[Delivery], *, within: Transaction | None = None
    ) -> None:
        """One delete per source queue for all of `deliveries`."""
        for queue, message_ids in _ids_by_queue(deliveries).items():
            self._execute(_DELETE_MANY, (queue, message_ids), queue=queue, within=within)

    def ack_with_reply(self, delivery: Delivery, queue: str, body: bytes) -> None:
        _check_queue_name(queue)
        params = (queue, _as_text(queue, body), delivery.queue, _message_id(delivery))
        self._execute(_REPLY_AND_ACK, (*params, insert_channel(queue)), queue=queue)

    def ack_with_replies(self, queue: str, replies: Sequence[tuple[Delivery, bytes]]) -> None:
        """All replies sent and all deliveries deleted in one transaction (one commit),
        committed like _REPLY_AND_ACK when the deliveries come from one queue."""
        if len(replies) == 1:  # PGMQ's single send: see _SEND_ONE
            ((delivery, body),) = replies
            self.ack_with_reply(delivery, queue, body)
        elif replies:
            bodies = [body for _, body in replies]
            deliveries = [delivery for delivery, _ in replies]
            self._send_batch_and_ack(queue, bodies, deliveries, one_statement=_REPLIES_AND_ACKS)

    def send_batch_and_ack(
        self,
        queue: str,
        bodies: Sequence[bytes],
        deliveries: Sequence[Delivery],
        *,
        within: Transaction | None = None,
    ) -> None:
        """One statement when the deliveries come from one queue (the usual case), else
        one transaction: `within`, or one of its own."""
        self._send_batch_and_ack(queue, bodies, deliveries, within=within)

    def _send_batch_and_ack(
        self,
        queue: str,
        bodies: Sequence[bytes],
        deliveries: Sequence[Delivery],
        *,
        within: Transaction | None = None,
        one_statement: str = _SEND_BATCH_AND_DELETE,
    ) -> None:
        _check_queue_name(queue)
        batch = _as_json_array(queue, bodies)
        by_source = _ids_by_queue(deliveries)
        if bodies and len(by_source) == 1:
            ((source, message_ids),) = by_source.items()
            params = (queue, batch, source, message_ids, insert_channel(queue))
            self._execute(one_statement, params, queue=queue, within=within)
            return
        if within is not None:
            super().send_batch_and_ack(queue, bodies, deliveries, within=within)
            return
        pool = self._ready_pool()
        with _translated(queue), pool.connection() as connection, connection.transaction():
            if bodies:
                connection.execute(_SEND_BATCH, (queue, batch, 0.0, insert_channel(queue)))
            for source, message_ids in by_source.items():
                connection.execute(_DELETE_MANY, (source, message_ids))

    def database_message_ids(self, deliveries: Sequence[Delivery]) -> tuple[str, list[int]] | None:
        by_queue = _ids_by_queue(deliveries)
        return next(iter(by_queue.items())) if len(by_queue) == 1 else None

    def nack(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        self._set_visibility(delivery, delay)

    def extend_visibility(self, delivery: Delivery, seconds: float) -> None:
        if not self._set_visibility(delivery, seconds):
            log.warning(
                "could not extend visibility of message %s on %r: it is no longer queued",
                delivery.receipt,
                delivery.queue,
            )

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._bury(
            delivery.queue, _message_id(delivery), delivery.body, delivery.delivery_count, reason
        )

    def queue_stats(self, queue: str) -> QueueStats:
        _check_queue_name(queue)
        rows = self._execute(_METRICS, (queue,), queue=queue)
        total, visible = rows[0]
        return QueueStats(queue=queue, ready=visible, in_flight=total - visible)

    def broadcast(self, channel: str, payload: bytes, *, within: Transaction | None = None) -> None:
        """See `Broker.broadcast`: a NOTIFY, so `within=` delivers it at commit."""
        text = check_notice_size(channel, _as_text(check_channel_name(channel), payload))
        params = (notice_channel(channel), text)
        self._execute(NOTIFY, params, queue=channel, within=within)

    def subscribe(self, channel: str) -> Subscription:
        check_channel_name(channel)
        return PgmqSubscription(self._notice_hub(), channel)

    def wake(self) -> None:
        with self._lock:
            listeners = list(self._listeners.values())
        for listener in listeners:
            listener.wake()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            listeners, self._listeners = list(self._listeners.values()), {}
            notices, pool = self._notices, self._pool
        for listener in listeners:
            listener.wake()
        if notices is not None:
            notices.close()
        if pool is not None:
            pool.close()

    # -- internals --------------------------------------------------------------------------

    def _ready_pool(self) -> ConnectionPool[psycopg.Connection[TupleRow]]:
        """The connection pool, installing PGMQ and opening the pool on first use."""
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._closed:
                raise BrokerError("the PGMQ broker is closed", recoverable=False)
            if self._pool is None:
                install_pgmq(self.database_url)
                self._pool = ConnectionPool(
                    self.database_url,
                    min_size=1,
                    max_size=self._pool_size,
                    kwargs={"autocommit": True},
                    open=True,
                    name="tasker-pgmq",
                )
            return self._pool

    def _drained_marks(self) -> dict[str, Mark]:
        """This thread's marks at which a read drained a queue (see `receive`)."""
        marks: dict[str, Mark] | None = getattr(self._local, "drained", None)
        if marks is None:
            marks = self._local.drained = {}
        return marks

    def _listener(self, queue: str) -> QueueListener:
        with self._lock:
            if self._closed:
                raise BrokerError("the PGMQ broker is closed", recoverable=False)
            listener = self._listeners.get(queue)
            if listener is None:
                with _translated(queue):
                    listener = QueueListener(self._notice_hub(), queue)
                self._listeners[queue] = listener
            return listener

    def _notice_hub(self) -> NoticeHub:
        with self._lock:
            if self._closed:
                raise BrokerError("the PGMQ broker is closed", recoverable=False)
            if self._notices is None:
                self._notices = NoticeHub(self.database_url, retry_after=self.poll_interval)
            return self._notices

    def _execute(
        self,
        query: str,
        params: Sequence[Any],
        *,
        queue: str,
        within: Transaction | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one statement: in the caller's transaction if given, else on a pooled connection."""
        pool = self._ready_pool()  # installs PGMQ even when only `within` will be used
        with _translated(queue):
            if within is not None:
                return within.execute_sql(query, params)
            with pool.connection() as connection:
                return connection.execute(query, params).fetchall()

    def _read_live(self, queue: str, max_messages: int, lease: int) -> list[Delivery]:
        """Read up to `max_messages`, dead-lettering (and replacing) those read too often."""
        while True:
            rows = self._execute(_READ, (queue, lease, max_messages), queue=queue)
            live: list[Delivery] = []
            for message_id, read_count, text in rows:
                if read_count > self.max_deliveries:
                    delivered = read_count - 1  # this read was not handed to anyone
                    reason = f"not acknowledged after {delivered} deliveries"
                    self._bury(queue, message_id, text.encode(), delivered, reason)
                else:
                    live.append(Delivery(queue, text.encode(), read_count, message_id))
            if live or len(rows) == len(live):
                return live

    def _bury(self, queue: str, message_id: int, body: bytes, count: int, reason: str) -> None:
        """Move a message to its dead-letter queue (send + delete in one statement)."""
        letter = DeadLetter(
            source_queue=queue, reason=reason, delivery_count=count, body=body.decode()
        )
        target = dead_letter_queue(queue)
        params = (target, msgspec.json.encode(letter).decode(), queue, message_id)
        self._execute(_SEND_AND_DELETE, (*params, insert_channel(target)), queue=target)
        log.warning("dead-lettered message %s from %r: %s", message_id, queue, reason)

    def _set_visibility(self, delivery: Delivery, seconds: float) -> bool:
        params = (delivery.queue, _message_id(delivery), max(0.0, seconds))
        return bool(self._execute(_SET_VT, params, queue=delivery.queue))


def _ids_by_queue(deliveries: Sequence[Delivery]) -> dict[str, list[int]]:
    by_queue: dict[str, list[int]] = defaultdict(list)
    for delivery in deliveries:
        by_queue[delivery.queue].append(_message_id(delivery))
    return by_queue


def _check_queue_name(queue: str, max_length: int = _MAX_NAME) -> None:
    if not (_QUEUE_NAME.fullmatch(queue) and len(queue) <= max_length):
        raise BrokerError(
            f"invalid PGMQ queue name {queue!r}: use 1-{max_length} lowercase letters, "
            "digits and underscores",
            recoverable=False,
        )


def _message_id(delivery: Delivery) -> int:
    if not isinstance(delivery.receipt, int):
        raise BrokerError(
            f"delivery from {delivery.queue!r} was not received from PGMQ "
            f"(receipt {delivery.receipt!r})",
            recoverable=False,
        )
    return delivery.receipt


def _as_json_array(queue: str, bodies: Sequence[bytes]) -> str:
    """`bodies` as one JSON array: see _BODIES."""
    return "[" + ",".join(_as_text(queue, body) for body in bodies) + "]"


def _as_text(queue: str, body: bytes) -> str:
    try:
        return body.decode()
    except UnicodeDecodeError as exc:
        raise BrokerError(
            f"message for queue {queue!r} is not UTF-8 JSON: {exc}", recoverable=False
        ) from exc


def _fetch_flag(connection: psycopg.Connection[Any], query: str, params: Sequence[Any]) -> bool:
    row = connection.execute(query, params).fetchone()
    return bool(row and row[0])


@contextmanager
def _translated(queue: str) -> Iterator[None]:
    """Turn psycopg errors into BrokerError, saying whether a retry can help."""
    try:
        yield
    except PoolClosed as exc:
        raise BrokerError("the PGMQ broker is closed", recoverable=False) from exc
    except psycopg.errors.UndefinedTable as exc:
        raise BrokerError(
            f"PGMQ queue {queue!r} does not exist: call ensure_queue({queue!r}) first ({exc})",
            recoverable=False,
        ) from exc
    except psycopg.DataError as exc:
        raise BrokerError(
            f"PGMQ rejected data for queue {queue!r} (bodies must be JSON): {exc}",
            recoverable=False,
        ) from exc
    except psycopg.OperationalError as exc:  # connection trouble, pool timeout, deadlock
        raise BrokerError(f"PGMQ operation on {queue!r} failed, retry later: {exc}") from exc
    except psycopg.Error as exc:
        raise BrokerError(f"PGMQ operation on {queue!r} failed: {exc}", recoverable=False) from exc
