"""A broker behind a circuit breaker: when the broker keeps failing, callers fail fast.

Every call goes through the breaker; only recoverable BrokerErrors (the broker is down or
unreachable) count as failures, never a caller's mistake. While the breaker is open,
calls raise a recoverable BrokerError at once instead of waiting on a dead broker;
after its reset timeout one trial call decides whether it closes again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pybreaker

from tasker.messaging.broker import (
    Broker,
    BrokerError,
    Delivery,
    QueueStats,
    Subscription,
    Transaction,
)


def counts_against_broker(error: BaseException) -> bool:
    """Whether `error` says the broker is unhealthy (rather than the call being wrong)."""
    return isinstance(error, BrokerError) and error.recoverable


class GuardedBroker(Broker):
    def __init__(self, inner: Broker, breaker: pybreaker.CircuitBreaker) -> None:
        super().__init__(max_deliveries=inner.max_deliveries)
        self.inner = inner
        self.breaker = breaker
        self.transactional = inner.transactional

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            # Not `breaker.call`: it holds the breaker's lock for the whole call, so every
            # broker call of the process (blocking receives included) would run one at a
            # time. `calling()` takes the lock only to check and update the breaker.
            with self.breaker.calling():
                return method(*args, **kwargs)
        except pybreaker.CircuitBreakerError as exc:
            # Callers already retry recoverable broker errors; an open circuit is one.
            raise BrokerError(f"broker circuit {self.breaker.name!r} is open: {exc}") from exc

    def ensure_queue(self, queue: str) -> None:
        self._call(self.inner.ensure_queue, queue)

    def send_batch(
        self,
        queue: str,
        bodies: Sequence[bytes],
        *,
        delay: float = 0.0,
        within: Transaction | None = None,
    ) -> None:
        self._call(self.inner.send_batch, queue, bodies, delay=delay, within=within)

    def receive(
        self,
        queue: str,
        *,
        max_messages: int = 1,
        visibility_timeout: float = 30.0,
        wait: float = 0.0,
    ) -> list[Delivery]:
        deliveries: list[Delivery] = self._call(
            self.inner.receive,
            queue,
            max_messages=max_messages,
            visibility_timeout=visibility_timeout,
            wait=wait,
        )
        return deliveries

    def ack(self, delivery: Delivery, *, within: Transaction | None = None) -> None:
        self._call(self.inner.ack, delivery, within=within)

    def ack_with_reply(self, delivery: Delivery, queue: str, body: bytes) -> None:
        self._call(self.inner.ack_with_reply, delivery, queue, body)

    def ack_many(
        self, deliveries: Sequence[Delivery], *, within: Transaction | None = None
    ) -> None:
        self._call(self.inner.ack_many, deliveries, within=within)

    def ack_with_replies(self, queue: str, replies: Sequence[tuple[Delivery, bytes]]) -> None:
        self._call(self.inner.ack_with_replies, queue, replies)

    def send_batch_and_ack(
        self,
        queue: str,
        bodies: Sequence[bytes],
        deliveries: Sequence[Delivery],
        *,
        within: Transaction | None = None,
    ) -> None:
        self._call(self.inner.send_batch_and_ack, queue, bodies, deliveries, within=within)

    def nack(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        self._call(self.inner.nack, delivery, delay=delay)

    def extend_visibility(self, delivery: Delivery, seconds: float) -> None:
        self._call(self.inner.extend_visibility, delivery, seconds)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._call(self.inner.dead_letter, delivery, reason)

    def queue_stats(self, queue: str) -> QueueStats:
        stats: QueueStats = self._call(self.inner.queue_stats, queue)
        return stats

    def broadcast(self, channel: str, payload: bytes, *, within: Transaction | None = None) -> None:
        self._call(self.inner.broadcast, channel, payload, within=within)

    def subscribe(self, channel: str) -> Subscription:
        subscription: Subscription = self._call(self.inner.subscribe, channel)
        return subscription

    def database_message_ids(self, deliveries: Sequence[Delivery]) -> tuple[str, list[int]] | None:
        return self.inner.database_message_ids(deliveries)

    def wake(self) -> None:
        self.inner.wake()

    def close(self) -> None:
        self.inner.close()
