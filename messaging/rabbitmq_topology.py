"""Names, arguments and headers of the queues behind one RabbitMQ-backed logical queue.

A logical queue `q` is served by:

- `q`: the durable *quorum* main queue holding ready messages. Quorum queues count
  redeliveries themselves (the `x-delivery-count` header), so a message requeued by a
  nack, an expired visibility timeout or a lost connection comes back counted;
- `q_dlq`: its dead-letter queue (`dead_letter_queue(q)`), also a quorum queue;
- `q.delay.<ms>`: one durable classic queue per delay bucket. Its messages expire after
  `<ms>` and RabbitMQ dead-letters them back into `q`, so a delayed message becomes ready
  on time without a timer in any client process. One queue per bucket (rather than
  per-message TTL in one queue) because RabbitMQ only expires messages at the head of a
  queue;
- `q.lease.<id>`: the slow path for a message held longer than the backend's `lease_after`
  (a long-running step): a durable classic queue holding a copy of the message that
  expires when its visibility timeout ends and is then dead-lettered back into `q`. The
  original delivery is acked, so RabbitMQ's consumer timeout never fires on it. Settling
  the message deletes the lease queue.

User queue names cannot contain '.', so these internal names never collide with them.
Every expiring queue also gets `x-expires`, so RabbitMQ deletes it once it is unused.

Upgrading from the layout where main queues were classic: RabbitMQ refuses to redeclare
a queue with different arguments (PRECONDITION_FAILED, inequivalent arg 'x-queue-type'),
so drain and delete the old `q` and `q_dlq` queues before starting this version.
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Any

import pika

from .broker import BrokerError

#: Deliveries counted before the message was last republished by this backend (a delayed
#: nack, a lease copy); RabbitMQ's own `x-delivery-count` counts the redeliveries since.
DELIVERY_COUNT_HEADER = "tasker-delivery-count"
#: Set by quorum queues on a redelivered message: how many times it was returned.
QUORUM_DELIVERY_COUNT_HEADER = "x-delivery-count"

#: Arguments of every main and dead-letter queue.
MAIN_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,200}")
# An expiring queue outlives its last message by this much before RabbitMQ deletes it.
_EXPIRY_GRACE_MS = 60_000
_MAX_TTL_MS = 2**32 - 1 - _EXPIRY_GRACE_MS
_PERSISTENT = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)


def validate_queue_name(queue: str) -> str:
    """Return `queue` if it is a usable logical queue name, else raise a clear error."""
    if not isinstance(queue, str) or not _QUEUE_NAME.fullmatch(queue):
        raise BrokerError(
            f"invalid queue name {queue!r}: use 1-200 characters from A-Z, a-z, 0-9, '_' "
            "and '-' (the RabbitMQ backend reserves '.' for its delay and lease queues)",
            recoverable=False,
        )
    return queue


def to_ttl_ms(seconds: float) -> int:
    """`seconds` as a whole number of milliseconds, rounded up (never early)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise BrokerError(f"invalid duration {seconds!r}: must be >= 0", recoverable=False)
    ms = math.ceil(seconds * 1000)
    if ms > _MAX_TTL_MS:
        raise BrokerError(f"duration {seconds}s is too long for RabbitMQ", recoverable=False)
    return ms


def delay_bucket_ms(seconds: float) -> int:
    """Round a delay up to one of ~32 buckets per doubling, bounding how many delay queues
    exist (retry backoff with jitter would otherwise create one queue per value)."""
    ms = to_ttl_ms(seconds)
    step = 1 << max(0, ms.bit_length() - 6)
    return -(-ms // step) * step


def delay_queue(queue: str, ms: int) -> str:
    return f"{queue}.delay.{ms}"


def new_lease_queue(queue: str) -> str:
    return f"{queue}.lease.{uuid.uuid4().hex}"


def expiring_queue_arguments(target: str, ttl_ms: int) -> dict[str, Any]:
    """Arguments of a classic queue whose messages move to `target` after `ttl_ms`."""
    return {
        "x-message-ttl": ttl_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": target,
        "x-expires": ttl_ms + _EXPIRY_GRACE_MS,
    }


def message_properties(previous_deliveries: int) -> Any:
    """Persistent message properties carrying the delivery count so far."""
    if previous_deliveries <= 0:
        return _PERSISTENT
    return pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent,
        headers={DELIVERY_COUNT_HEADER: previous_deliveries},
    )


def previous_deliveries(properties: Any) -> int:
    """How many times a received message was delivered before (0 for a fresh one): our
    header (deliveries before our last republish) plus the quorum queue's count since."""
    headers = getattr(properties, "headers", None) or {}
    return _count(headers.get(DELIVERY_COUNT_HEADER)) + _count(
        headers.get(QUORUM_DELIVERY_COUNT_HEADER)
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
