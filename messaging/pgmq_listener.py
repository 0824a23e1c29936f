"""Wake-ups for PGMQ consumers: one LISTEN connection per queue, shared by a broker's threads.

Senders NOTIFY `pgmq.q_<queue>.INSERT` (PGMQ's channel name) with each commit that adds
messages. A background thread owns the LISTEN connection (a psycopg connection is not for
concurrent use) and bumps a counter under a condition variable that any number of
receivers wait on.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

# How often the thread looks up from the socket to see whether it should stop.
_STOP_CHECK_SECONDS = 1.0


def insert_channel(queue: str) -> str:
    """The channel PGMQ notifies when a message is inserted into `queue`."""
    return f"pgmq.q_{queue}.INSERT"


class Mark(NamedTuple):
    """What a receiver has seen so far: counts of arrivals and of wake() calls."""

    arrivals: int
    wakes: int


class QueueListener:
    """LISTENs on one queue's insert channel and lets receivers block until something changes.

    A receiver takes a `mark()` BEFORE it reads the queue and then `wait`s on that mark, so an
    insert that commits between its read and its wait is never missed.
    """

    def __init__(self, database_url: str, queue: str, *, retry_after: float) -> None:
        self.queue = queue
        self.channel = insert_channel(queue)
        self._url = database_url
        self._retry_after = retry_after
        self._condition = threading.Condition()
        self._arrivals = 0
        self._wakes = 0
        self._stopping = threading.Event()
        # Connect here, not in the thread: the caller's first read then cannot race the LISTEN.
        self._connection: psycopg.Connection[Any] | None = self._connect()
        self._thread = threading.Thread(target=self._run, name=f"pgmq-listen-{queue}", daemon=True)
        self._thread.start()

    def mark(self) -> Mark:
        with self._condition:
            return Mark(self._arrivals, self._wakes)

    def wait(self, mark: Mark, timeout: float) -> bool:
        """Block until an insert or a wake() after `mark`, or `timeout`; True if woken."""
        with self._condition:
            self._condition.wait_for(lambda: self._changed_since(mark), timeout)
            return self._wakes != mark.wakes

    def wake(self) -> None:
        """Release every receiver waiting now, telling it to return."""
        with self._condition:
            self._wakes += 1
            self._condition.notify_all()

    def stop(self) -> None:
        """Ask the thread to end (it notices at the next notification or check)."""
        self._stopping.set()
        self.wake()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("PGMQ listener for %r did not stop within %.1fs", self.queue, timeout)

    def _changed_since(self, mark: Mark) -> bool:
        return self._arrivals != mark.arrivals or self._wakes != mark.wakes

    def _arrived(self) -> None:
        with self._condition:
            self._arrivals += 1
            self._condition.notify_all()

    def _connect(self) -> psycopg.Connection[Any]:
        connection = psycopg.connect(self._url, autocommit=True)
        connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        return connection

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._listen_once()
        finally:
            self._disconnect()

    def _listen_once(self) -> None:
        try:
            if self._connection is None:
                self._connection = self._connect()
                self._arrived()  # inserts during the outage went unheard: make receivers look
            for _ in self._connection.notifies(timeout=_STOP_CHECK_SECONDS):
                if self._stopping.is_set():
                    return  # close() nudged us with a notification
                self._arrived()
        except psycopg.Error as exc:
            # Receivers still poll every poll_interval, so an outage only slows wake-ups.
            log.warning(
                "PGMQ listener for %r lost its connection (%s); reconnecting in %.1fs",
                self.queue,
                exc,
                self._retry_after,
            )
            self._disconnect()
            self._stopping.wait(self._retry_after)

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
