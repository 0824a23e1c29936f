"""What the RabbitMQ backend does on one channel: each function is one step of an
operation that `ThreadLinks.run` may repeat on a fresh channel after a reconnect."""

from __future__ import annotations

from typing import Any

import msgspec

from . import rabbitmq_topology as topo
from .broker import DeadLetter, dead_letter_queue

_encode = msgspec.json.Encoder().encode

RawMessage = tuple[Any, Any, bytes]  # pika's (method, properties, body)


def declare_main(channel: Any, queue: str) -> None:
    """Declare a main (or dead-letter) queue: durable, quorum. Idempotent."""
    channel.queue_declare(queue, durable=True, arguments=topo.MAIN_QUEUE_ARGUMENTS)


def route(channel: Any, queue: str, delay: float) -> str:
    """The queue to publish to so a message reaches `queue` after `delay` seconds."""
    if delay <= 0:
        return queue
    channel.queue_declare(queue, passive=True)  # else the delayed message would vanish
    ms = topo.delay_bucket_ms(delay)
    target = topo.delay_queue(queue, ms)
    channel.queue_declare(target, durable=True, arguments=topo.expiring_queue_arguments(queue, ms))
    return target


def republish(channel: Any, queue: str, body: bytes, count: int, delay: float) -> None:
    """Put a message back into `queue` (after `delay`) carrying its delivery count."""
    target = route(channel, queue, delay)
    channel.basic_publish("", target, body, topo.message_properties(count), mandatory=True)


def get_ready(channel: Any, queue: str, limit: int) -> list[RawMessage]:
    """Up to `limit` ready messages by basic.get (one round trip each, stops when empty)."""
    messages: list[RawMessage] = []
    while len(messages) < limit:
        method, properties, body = channel.basic_get(queue)
        if method is None:
            break
        messages.append((method, properties, body))
    return messages


def lease(channel: Any, queue: str, body: bytes, count: int, ttl_ms: int) -> str:
    """Put a confirmed copy of a message in a new lease queue; return that queue's name."""
    lease_queue = topo.new_lease_queue(queue)
    arguments = topo.expiring_queue_arguments(queue, ttl_ms)
    channel.queue_declare(lease_queue, durable=True, arguments=arguments)
    properties = topo.message_properties(count)
    channel.basic_publish("", lease_queue, body, properties, mandatory=True)
    return lease_queue


def publish_dead_letter(channel: Any, queue: str, body: bytes, count: int, reason: str) -> None:
    dead = DeadLetter(queue, reason, count, body.decode("utf-8", errors="replace"))
    target = dead_letter_queue(queue)
    declare_main(channel, target)  # idempotent; never drop a dead letter
    channel.basic_publish("", target, _encode(dead), topo.message_properties(0), mandatory=True)
