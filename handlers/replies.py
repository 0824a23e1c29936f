"""Result replies from many handler threads, combined into one broker call when they meet.

Each handler thread reports its own result and waits until it is sent. The first to come
sends everything waiting at that moment in one `ack_with_replies` (one transaction on
PGMQ); results finishing meanwhile wait and go together in the next call. A lone result is
sent at once by its own thread (no hand-off), a burst costs one commit instead of one each.
Only on a transactional broker, whose batch is all or none: elsewhere a failed batch could
leave some pairs done, and retrying those would ack a delivery twice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from tasker.messaging.broker import Broker, Delivery


@dataclass
class _Reply:
    delivery: Delivery
    body: bytes
    done: bool = False
    error: Exception | None = None


class ReplyCombiner:
    """Sends replies to `queue`, several per broker call when threads report together."""

    def __init__(self, broker: Broker, queue: str) -> None:
        self.broker = broker
        self.queue = queue
        self._condition = threading.Condition()
        self._waiting: list[_Reply] = []
        self._sending = False

    def send(self, delivery: Delivery, body: bytes) -> None:
        """Send `body` and ack `delivery`; raises what the broker raised for its batch."""
        if not self.broker.transactional:
            self.broker.ack_with_reply(delivery, self.queue, body)
            return
        reply = _Reply(delivery, body)
        with self._condition:
            self._waiting.append(reply)
            while self._sending and not reply.done:
                self._condition.wait()
            if not reply.done:
                # Each thread waits for its one reply, so a batch is at most one per thread.
                batch, self._waiting, self._sending = self._waiting, [], True
        if not reply.done:
            self._send_batch(batch)
        if reply.error is not None:
            raise reply.error

    def _send_batch(self, batch: list[_Reply]) -> None:
        error: Exception | None = None
        try:
            self.broker.ack_with_replies(self.queue, [(r.delivery, r.body) for r in batch])
        except Exception as exc:
            error = exc
        with self._condition:
            for reply in batch:
                reply.done, reply.error = True, error
            self._sending = False
            self._condition.notify_all()  # the batch's threads return; one waiter sends next
