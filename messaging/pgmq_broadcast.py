"""Broadcasts for the PGMQ backend: NOTIFY on a dedicated channel, one LISTEN per subscriber.

A NOTIFY sent inside a transaction is delivered when that transaction commits, so a notice
sent `within=` the change it announces is never heard before the change is visible, and
never at all if it rolls back.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from psycopg import sql

from tasker.messaging.broker import BrokerError, Subscription

log = logging.getLogger(__name__)

NOTIFY = "SELECT pg_notify(%s::text, %s::text)"
# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more.
MAX_PAYLOAD_BYTES = 7999


def notice_channel(channel: str) -> str:
    """The PostgreSQL channel behind broadcast channel `channel` (apart from PGMQ's own)."""
    return f"tasker_broadcast_{channel}"


def check_notice_size(channel: str, text: str) -> str:
    """`text` if PostgreSQL can carry it as a NOTIFY payload, else a clear error."""
    size = len(text.encode())
    if size > MAX_PAYLOAD_BYTES:
        raise BrokerError(
            f"broadcast on {channel!r} is {size} bytes; PGMQ's NOTIFY carries at most "
            f"{MAX_PAYLOAD_BYTES}: send an id, not the data",
            recoverable=False,
        )
    return text


class PgmqSubscription(Subscription):
    """LISTENs on one channel over its own connection; reconnects (losing what was sent
    meanwhile, as the broadcast contract allows) when that connection breaks."""

    def __init__(self, database_url: str, channel: str, *, retry_after: float) -> None:
        self.channel = notice_channel(channel)
        self._url = database_url
        self._retry_after = retry_after
        try:
            self._connection: psycopg.Connection[Any] | None = self._connect()
        except psycopg.Error as exc:
            raise BrokerError(f"cannot listen on {channel!r}, retry later: {exc}") from exc

    def receive(self, timeout: float) -> list[bytes]:
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            connection = self._connection or self._reconnect()
            first = list(connection.notifies(timeout=max(timeout, 0.0), stop_after=1))
            rest = list(connection.notifies(timeout=0.0)) if first else []
        except psycopg.Error as exc:
            log.warning("broadcast listener on %r lost its connection: %s", self.channel, exc)
            self.close()
            time.sleep(max(0.0, min(self._retry_after, deadline - time.monotonic())))
            return []
        return [notify.payload.encode() for notify in (*first, *rest)]

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _reconnect(self) -> psycopg.Connection[Any]:
        self._connection = self._connect()
        log.info("broadcast listener on %r reconnected", self.channel)
        return self._connection

    def _connect(self) -> psycopg.Connection[Any]:
        connection = psycopg.connect(self._url, autocommit=True)
        connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        return connection
