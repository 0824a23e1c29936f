"""Long polls: a request waits, without polling, until its task finishes.

The process LISTENs for task-finished notices only while a request waits: every listening
connection is woken by every NOTIFY in the database (each step's hop sends two), so an
idle LISTEN would cost the server CPU on all the work the API never asks about. One
connection serves all waiters (`NoticeHub`); a reconnect wakes them all: they re-read
and wait again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from uuid import UUID

import psycopg

from tasker.messaging.pg_notices import NoticeHub
from tasker.state.notices import FINISHED_CHANNEL

log = logging.getLogger(__name__)

# How long a waiter's LISTEN may take to come into effect before the request goes on
# without it (it then answers at its deadline).
_LISTEN_TIMEOUT = 1.0


class FinishedWaiter:
    def __init__(self, database_url: str) -> None:
        self._hub = NoticeHub(database_url, retry_after=_LISTEN_TIMEOUT)
        self._lock = threading.Lock()
        self._tokens: dict[asyncio.Future[None], int] = {}

    def stop(self) -> None:
        self._hub.close()

    async def register(self, task_uuid: UUID) -> asyncio.Future[None]:
        """A future that completes when `task_uuid` finishes (register, then read state):
        it returns once the LISTEN is in effect, so no notice can slip by the read."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        abandoned = threading.Event()  # the request went away while the LISTEN was made
        try:
            listening = await asyncio.to_thread(self._listen, task_uuid, future, abandoned)
        except psycopg.Error as exc:
            log.warning("cannot listen for task-finished notices (%s); waiting it out", exc)
        except BaseException:
            with self._lock:
                abandoned.set()
            self.unregister(task_uuid, future)
            raise
        else:
            if not listening:
                log.warning("task-finished notices not heard yet; the wait may run its course")
        return future

    def unregister(self, task_uuid: UUID, future: asyncio.Future[None]) -> None:
        with self._lock:
            token = self._tokens.pop(future, None)
        if token is not None:
            self._hub.unlisten(FINISHED_CHANNEL, token)

    def _listen(
        self, task_uuid: UUID, future: asyncio.Future[None], abandoned: threading.Event
    ) -> bool:
        """LISTEN for `task_uuid`'s notice (a blocking call, off the event loop)."""
        wanted = str(task_uuid)

        def on_notice(payload: str) -> None:
            if payload.partition(":")[0] == wanted:
                _resolve_soon(future)

        token, listening = self._hub.listen(
            FINISHED_CHANNEL, on_notice, lambda: _resolve_soon(future)
        )
        with self._lock:
            if not abandoned.is_set():
                self._tokens[future] = token
                return listening
        self._hub.unlisten(FINISHED_CHANNEL, token)
        return False


def _resolve_soon(future: asyncio.Future[None]) -> None:
    """Complete `future` on its own loop (notices arrive on the hub's thread)."""
    future.get_loop().call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
