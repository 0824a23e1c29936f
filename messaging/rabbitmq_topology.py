"""Names, arguments and headers of the queues behind one RabbitMQ-backed logical queue.

A logical queue `q` is served by:

- `q`: the durable main queue holding ready messages;
- `q_dlq`: its dead-letter queue (`dead_letter_queue(q)`);
- `q.delay.<ms>`: one durable queue per delay bucket. Its messages expire after `<ms>` and
  RabbitMQ dead-letters them back into `q`, so a delayed message becomes ready on time
  without a timer in any client process. One queue per bucket (rather than per-message
  TTL in one queue) because RabbitMQ only expires messages at the head of a queue;
- `q.lease.<id>`: one durable queue per received, not yet settled message (a *lease*).
  It holds a copy of the message that expires after the visibility timeout and is then
  dead-lettered back into `q`: that is how an unsettled message becomes visible again,
  even if the receiving process died. Settling the message deletes the lease queue.

User queue names cannot contain '.', so these internal names never collide with them.
Every expiring queue also gets `x-expires`, so RabbitMQ deletes it once it is unused.
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Any

import pika

from .broker import BrokerError

#: How many times a message has been delivered before; absent on a fresh message.
DELIVERY_COUNT_HEADER = "tasker-delivery-count"

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,200}")
# An expiring queue outlives its last message by this much before RabbitMQ deletes it.
_EXPIRY_GRACE_MS = 60_000
_MAX_TTL_MS = 2**32 - 1 - _EXPIRY_GRACE_MS


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
    """Arguments of a queue whose messages move to `target` after `ttl_ms`."""
    return {
        "x-message-ttl": ttl_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": target,
        "x-expires": ttl_ms + _EXPIRY_GRACE_MS,
    }


def message_properties(previous_deliveries: int) -> Any:
    """Persistent message properties carrying the delivery count so far."""
    return pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent,
        headers={DELIVERY_COUNT_HEADER: previous_deliveries},
    )


def previous_deliveries(properties: Any) -> int:
    """How many times a received message was delivered before (0 for a fresh one)."""
    headers = getattr(properties, "headers", None) or {}
    value = headers.get(DELIVERY_COUNT_HEADER, 0)
    return value if isinstance(value, int) and value >= 0 else 0
