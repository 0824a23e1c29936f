"""One LISTEN connection for many channels: a PGMQ broker's queue inserts and broadcasts,
the API's task-finished notices.

At each commit that NOTIFYs, PostgreSQL signals every backend listening in the database,
whatever channels it listens on, and each signalled backend wakes to read the notice
queue. A connection per channel therefore costs server CPU on every step's hop; measured
under load, each listening connection cost about 0.2 ms of PostgreSQL CPU per task. So a
hub keeps one connection, owned by one thread that hands each notice to the callbacks of
its channel, and LISTENs on a channel only while someone listens. Other threads never
touch the connection: they tell the thread, through a pipe, that the set of channels
changed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

# How often the thread looks up from the socket to see whether it should stop.
_STOP_CHECK_SECONDS = 1.0


def _nothing() -> None:
    pass


class _Callbacks(NamedTuple):
    on_notice: Callable[[str], None]  # called with each notice's payload
    on_gap: Callable[[], None]  # called after a reconnect: notices may have been missed


class NoticeHub:
    """LISTENs on the channels its users ask for, over one connection and one thread."""

    def __init__(self, database_url: str, *, retry_after: float) -> None:
        self._url = database_url
        self._retry_after = retry_after
        self._condition = threading.Condition()
        self._callbacks: dict[str, dict[int, _Callbacks]] = {}
        self._listening: set[str] = set()  # channels LISTENed on the current connection
        self._tokens = itertools.count()
        self._stopping = threading.Event()
        self._connection: psycopg.Connection[Any] | None = None
        self._thread: threading.Thread | None = None
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._pipe_open = True

    def listen(
        self,
        channel: str,
        on_notice: Callable[[str], None],
        on_gap: Callable[[], None] = _nothing,
    ) -> tuple[int, bool]:
        """Call `on_notice(payload)` for each notice on `channel` from now on; a token for
        `unlisten`, and whether the LISTEN is in effect (False while the database is
        unreachable: it takes effect on reconnection). The first call connects here and
        raises psycopg.Error if it cannot."""
        with self._condition:
            if self._stopping.is_set():
                raise psycopg.InterfaceError("the notice listener is closed")
            token = next(self._tokens)
            self._callbacks.setdefault(channel, {})[token] = _Callbacks(on_notice, on_gap)
            if self._thread is None:
                try:
                    self._start()
                except BaseException:
                    self._forget(channel, token)
                    raise
                return token, True
            if channel in self._listening:  # a later UNLISTEN sees this listener: no wake-up
                return token, True
            self._nudge()
            listening = self._condition.wait_for(
                lambda: channel in self._listening or self._stopping.is_set(),
                timeout=self._retry_after,
            )
            return token, bool(listening) and not self._stopping.is_set()

    def unlisten(self, channel: str, token: int) -> None:
        """Stop calling back the listener of `token` (the last one out UNLISTENs)."""
        with self._condition:
            if self._forget(channel, token):
                self._nudge()

    def close(self, timeout: float = 5.0) -> None:
        with self._condition:
            if self._stopping.is_set():
                return
            self._stopping.set()
            thread = self._thread
            self._nudge()
            self._condition.notify_all()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("notice listener did not stop within %.1fs", timeout)
                return  # it may still read the pipe: leave it open
        self._disconnect()
        with self._condition:
            self._pipe_open = False
            os.close(self._wake_read)
            os.close(self._wake_write)

    def _forget(self, channel: str, token: int) -> bool:
        """Drop one listener (caller holds the lock); True if `channel` has none left."""
        callbacks = self._callbacks.get(channel, {})
        callbacks.pop(token, None)
        if callbacks:
            return False
        self._callbacks.pop(channel, None)
        return True

    def _start(self) -> None:
        """Connect in the caller (so its first read cannot race the LISTEN), then hand the
        connection to the thread."""
        self._connection = self._connect()
        self._thread = threading.Thread(target=self._run, name="pg-notices", daemon=True)
        self._thread.start()

    def _nudge(self) -> None:
        """Wake the thread from its select (caller holds the lock)."""
        if self._thread is None or not self._pipe_open:
            return
        with contextlib.suppress(BlockingIOError):  # a full pipe wakes it all the same
            os.write(self._wake_write, b"x")

    def _connect(self) -> psycopg.Connection[Any]:
        connection = psycopg.connect(self._url, autocommit=True)
        with self._condition:
            channels = set(self._callbacks)
        try:
            for channel in channels:
                connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except BaseException:
            connection.close()
            raise
        with self._condition:
            self._listening = channels
            self._condition.notify_all()
        return connection

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._listen_once()
        finally:
            with self._condition:
                self._condition.notify_all()

    def _listen_once(self) -> None:
        try:
            connection = self._connection
            if connection is None:
                connection = self._connection = self._connect()
                self._gap()
            readable, _, _ = select.select(
                [connection.fileno(), self._wake_read], [], [], _STOP_CHECK_SECONDS
            )
            if self._wake_read in readable:
                os.read(self._wake_read, 4096)
                self._apply_channels(connection)
            for notice in connection.notifies(timeout=0.0):
                self._dispatch(notice.channel, notice.payload)
        except psycopg.Error as exc:
            # Receivers still poll every poll_interval, so an outage only slows wake-ups.
            log.warning(
                "notice listener lost its connection (%s); reconnecting in %.1fs",
                exc,
                self._retry_after,
            )
            self._disconnect()
            self._stopping.wait(self._retry_after)

    def _apply_channels(self, connection: psycopg.Connection[Any]) -> None:
        """LISTEN on channels newly asked for, UNLISTEN those no one wants any more."""
        with self._condition:
            wanted, current = set(self._callbacks), set(self._listening)
        for channel in wanted - current:
            connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        for channel in current - wanted:
            connection.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))
        with self._condition:
            self._listening = wanted
            self._condition.notify_all()

    def _dispatch(self, channel: str, payload: str) -> None:
        with self._condition:
            callbacks = list(self._callbacks.get(channel, {}).values())
        for callback in callbacks:
            callback.on_notice(payload)

    def _gap(self) -> None:
        """After a reconnect: notices sent meanwhile went unheard; tell every listener."""
        with self._condition:
            callbacks = [c for by_token in self._callbacks.values() for c in by_token.values()]
        for callback in callbacks:
            callback.on_gap()

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        with self._condition:
            self._listening = set()
        if connection is not None:
            connection.close()
