"""Long polls: a request waits, without polling, until its task finishes.

One LISTEN connection per process (`FinishedListener`) wakes the requests waiting for the
task named in each notice. A reconnect wakes them all: they re-read and wait again.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from uuid import UUID

from tasker.state.notices import FinishedListener


class FinishedWaiter:
    def __init__(self, database_url: str) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[UUID, set[asyncio.Future[None]]] = defaultdict(set)
        self._listener = FinishedListener(
            database_url, self._on_finished, on_reconnect=self._wake_all
        )

    def start(self) -> None:
        self._listener.start()

    def stop(self) -> None:
        self._listener.stop()

    def register(self, task_uuid: UUID) -> asyncio.Future[None]:
        """A future that completes when `task_uuid` finishes (register, then read state)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiting[task_uuid].add(future)
        return future

    def unregister(self, task_uuid: UUID, future: asyncio.Future[None]) -> None:
        with self._lock:
            waiting = self._waiting.get(task_uuid)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    del self._waiting[task_uuid]

    def _on_finished(self, task_uuid: UUID, status: str) -> None:
        with self._lock:
            futures = list(self._waiting.get(task_uuid, ()))
        for future in futures:
            future.get_loop().call_soon_threadsafe(_resolve, future)

    def _wake_all(self) -> None:
        with self._lock:
            futures = [f for waiting in self._waiting.values() for f in waiting]
        for future in futures:
            future.get_loop().call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
