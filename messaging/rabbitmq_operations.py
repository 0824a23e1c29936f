"""What the RabbitMQ backend does on one channel: each function is one step of an
operation that `ThreadLinks.run` may repeat on a fresh channel after a reconnect."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec

from . import rabbitmq_topology as topo
from .broker import DeadLetter, dead_letter_queue

_encode = msgspec.json.Encoder().encode

RawMessage = tuple[Any, Any, bytes]  # pika's (method, properties, body)


def route(channel: Any, queue: str, delay: float) -> str:
    """The queue to publish to so a message reaches `queue` after `delay` seconds."""
    if delay <= 0:
        return queue
    channel.queue_declare(queue, passive=True)  # else the delayed message would vanish
    ms = topo.delay_bucket_ms(delay)
    target = topo.delay_queue(queue, ms)
    channel.queue_declare(target, durable=True, arguments=topo.expiring_queue_arguments(queue, ms))
    return target


def get_ready(channel: Any, queue: str, limit: int) -> list[RawMessage]:
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
    channel.queue_declare(target, durable=True)  # idempotent; never drop a dead letter
    channel.basic_publish("", target, _encode(dead), topo.message_properties(0), mandatory=True)


def await_messages(
    channel: Any, queue: str, limit: int, deadline: float, stop: Callable[[], bool]
) -> list[RawMessage]:
    """Consume until a message arrives or `stop()`; wakes on arrival, without polling."""
    arrived: list[RawMessage] = []
    # Prefetch bounds what the server pushes to what this call will return.
    channel.basic_qos(prefetch_count=limit)
    tag = channel.basic_consume(
        queue, lambda _ch, method, props, body: arrived.append((method, props, body))
    )
    while not arrived and not stop():
        # Returns as soon as a delivery (or a wake() callback) arrives.
        channel.connection.process_data_events(time_limit=max(0.0, deadline - time.monotonic()))
    channel.connection.process_data_events(time_limit=0)  # collect any already here
    channel.basic_cancel(tag)  # pika requeues deliveries it had not dispatched yet
    return arrived
