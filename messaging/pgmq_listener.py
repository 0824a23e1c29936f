"""Wake-ups for PGMQ consumers: receivers of one queue block until an insert or a wake().

Senders NOTIFY `pgmq.q_<queue>.INSERT` (PGMQ's channel name) with each commit that adds
messages. The broker's one notice connection (`pg_notices`) hears them and bumps a
counter under a condition variable that any number of receivers wait on.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

from tasker.messaging.pg_notices import NoticeHub


def insert_channel(queue: str) -> str:
    """The channel PGMQ notifies when a message is inserted into `queue`."""
    return f"pgmq.q_{queue}.INSERT"


class Mark(NamedTuple):
    """What a receiver has seen so far: counts of arrivals and of wake() calls."""

    arrivals: int
    wakes: int


class QueueListener:
    """Lets receivers of one queue block until something changes.

    A receiver takes a `mark()` BEFORE it reads the queue and then `wait`s on that mark, so an
    insert that commits between its read and its wait is never missed.
    """

    def __init__(self, hub: NoticeHub, queue: str) -> None:
        self.queue = queue
        self.channel = insert_channel(queue)
        self._condition = threading.Condition()
        self._arrivals = 0
        self._wakes = 0
        # After a reconnect, inserts during the outage went unheard: receivers must look.
        hub.listen(self.channel, lambda _: self._arrived(), self._arrived)

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

    def _changed_since(self, mark: Mark) -> bool:
        return self._arrivals != mark.arrivals or self._wakes != mark.wakes

    def _arrived(self) -> None:
        with self._condition:
            self._arrivals += 1
            self._condition.notify_all()
