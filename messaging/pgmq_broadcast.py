"""Broadcasts for the PGMQ backend: NOTIFY on a dedicated channel, heard over the broker's
one notice connection (`pg_notices`).

A NOTIFY sent inside a transaction is delivered when that transaction commits, so a notice
sent `within=` the change it announces is never heard before the change is visible, and
never at all if it rolls back.
"""

from __future__ import annotations

import threading

import psycopg

from tasker.messaging.broker import BrokerError, Subscription
from tasker.messaging.pg_notices import NoticeHub

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
    """Hears one channel through the broker's notice connection; while that connection is
    re-established, what is sent is lost, as the broadcast contract allows."""

    def __init__(self, hub: NoticeHub, channel: str) -> None:
        self.channel = notice_channel(channel)
        self._hub = hub
        self._condition = threading.Condition()
        self._payloads: list[bytes] = []
        try:
            self._token, listening = hub.listen(self.channel, self._heard)
        except psycopg.Error as exc:
            raise BrokerError(f"cannot listen on {channel!r}, retry later: {exc}") from exc
        if not listening:
            hub.unlisten(self.channel, self._token)
            raise BrokerError(f"cannot listen on {channel!r} now (no connection), retry later")

    def receive(self, timeout: float) -> list[bytes]:
        with self._condition:
            self._condition.wait_for(lambda: bool(self._payloads), max(timeout, 0.0))
            payloads, self._payloads = self._payloads, []
        return payloads

    def close(self) -> None:
        self._hub.unlisten(self.channel, self._token)

    def _heard(self, payload: str) -> None:
        with self._condition:
            self._payloads.append(payload.encode())
            self._condition.notify_all()
