"""Broadcasts for the RabbitMQ backend: one fanout exchange per channel, and per subscriber an
exclusive, auto-delete, server-named queue bound to it.

RabbitMQ deletes a subscriber's queue with its connection, so a subscriber that dies leaves
nothing behind, and a fanout exchange with no queue bound simply drops what it is sent.
Notices are transient: they matter only to the subscribers listening now.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pika
import pika.exceptions as px

from .broker import BrokerError, Subscription

log = logging.getLogger(__name__)

TRANSIENT = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Transient)


def declare_exchange(amqp_channel: Any, channel: str) -> str:
    """Declare (idempotently) the fanout exchange of broadcast `channel`; its name."""
    # '.' cannot appear in a logical queue name, so this never collides with one.
    exchange = f"tasker.broadcast.{channel}"
    amqp_channel.exchange_declare(exchange, exchange_type="fanout", durable=True)
    return exchange


class RabbitMQSubscription(Subscription):
    """A connection of its own consuming the subscriber's queue; reconnects (losing what was
    broadcast meanwhile, as the broadcast contract allows) when that connection breaks."""

    def __init__(self, parameters: Any, channel: str, *, retry_after: float) -> None:
        self.channel = channel
        self._parameters = parameters
        self._retry_after = retry_after
        self._arrived: list[bytes] = []
        self._connection: Any = None
        try:
            self._connect()
        except (px.AMQPError, OSError) as exc:
            raise BrokerError(f"cannot subscribe to {channel!r}, retry later: {exc}") from exc

    def receive(self, timeout: float) -> list[bytes]:
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            connection = self._connection or self._reconnect()
            while not self._arrived and (remaining := deadline - time.monotonic()) > 0:
                connection.process_data_events(time_limit=remaining)
        except (px.AMQPError, OSError) as exc:
            log.warning("broadcast subscriber on %r lost its connection: %s", self.channel, exc)
            self.close()
            time.sleep(max(0.0, min(self._retry_after, deadline - time.monotonic())))
        payloads, self._arrived = self._arrived, []
        return payloads

    def close(self) -> None:
        connection, self._connection = self._connection, None
        try:
            if connection is not None and connection.is_open:
                connection.close()
        except (px.AMQPError, OSError):  # already broken: RabbitMQ drops the queue anyway
            log.debug("closing a broadcast subscriber's connection failed", exc_info=True)

    def _reconnect(self) -> Any:
        self._connect()
        log.info("broadcast subscriber on %r reconnected", self.channel)
        return self._connection

    def _connect(self) -> None:
        connection = pika.BlockingConnection(self._parameters)
        try:
            amqp_channel = connection.channel()
            exchange = declare_exchange(amqp_channel, self.channel)
            declared = amqp_channel.queue_declare("", exclusive=True, auto_delete=True)
            queue = declared.method.queue
            amqp_channel.queue_bind(queue, exchange)
            amqp_channel.basic_consume(queue, self._on_message, auto_ack=True)
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def _on_message(self, _channel: Any, _method: Any, _properties: Any, body: bytes) -> None:
        self._arrived.append(body)
