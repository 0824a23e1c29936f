"""Task-finished notices: `finalize_task` NOTIFYs `tasker_task_finished` ('<uuid>:<status>').

`FinishedListener` keeps one LISTEN connection for a whole process and calls back for each
notice, reconnecting after a lost connection, so waiting clients cost no polling.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from uuid import UUID

import psycopg

FINISHED_CHANNEL = "tasker_task_finished"

log = logging.getLogger(__name__)


class FinishedListener(threading.Thread):
    """Calls `on_finished(task_uuid, status)` for every task-finished notice."""

    def __init__(
        self,
        url: str,
        on_finished: Callable[[UUID, str], None],
        *,
        on_reconnect: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(name="tasker-finished-listener", daemon=True)
        self.url = url
        self.on_finished = on_finished
        self.on_reconnect = on_reconnect  # notices may have been missed meanwhile
        self._stopping = threading.Event()
        self.listening = threading.Event()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("task-finished listener lost its connection (%s); reconnecting", exc)
                self._stopping.wait(1.0)

    def _listen(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f"LISTEN {FINISHED_CHANNEL}")
            self.listening.set()
            self.on_reconnect()
            while not self._stopping.is_set():
                for notice in connection.notifies(timeout=0.5):
                    self._dispatch(notice.payload)

    def _dispatch(self, payload: str) -> None:
        task_id, _, status = payload.partition(":")
        try:
            self.on_finished(UUID(task_id), status)
        except ValueError:
            log.warning("ignoring a malformed task-finished notice %r", payload)
