"""Worker presence: announce this process to the orchestrator through the broker.

A heartbeat goes out at start, every `interval` seconds, at once when shutdown begins
("stopping") and a last time on a graceful exit ("stopped"). The orchestrator records them
so operators can list workers and tell a dead one (no heartbeat for a few intervals).

Heartbeats are sent from their own thread: a slow or failing broker delays or drops a
heartbeat but never a step, a timeout or a visibility extension.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from tasker.messaging.broker import Broker
from tasker.messaging.messages import (
    ORCHESTRATION_WORKER_HEARTBEATS_QUEUE,
    WorkerHeartbeatMessage,
    WorkerStatus,
    encode,
)

log = logging.getLogger(__name__)

# How long a graceful exit waits for the final "stopped" heartbeat to go out.
_FINAL_BEAT_TIMEOUT = 5.0


class Presence(threading.Thread):
    """The heartbeat thread of one worker process."""

    def __init__(
        self,
        broker: Broker,
        *,
        worker_id: str,
        namespaces: tuple[str, ...],
        concurrency: int,
        interval: float,
        in_flight: Callable[[], int],
    ) -> None:
        super().__init__(name="tasker-presence", daemon=True)
        self.broker = broker
        self.interval = interval
        self._in_flight = in_flight
        started = datetime.now(UTC)
        # Who this worker is; each beat fills in the fields that change.
        self._identity = WorkerHeartbeatMessage(
            worker_id=worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            namespaces=list(namespaces),
            in_flight=0,
            concurrency=concurrency,
            started_at=started,
            sent_at=started,
            interval_seconds=interval,
        )
        self._status: WorkerStatus = "running"
        self._wake = threading.Event()
        self._done = threading.Event()
        self._queue_ready = False

    def stopping(self) -> None:
        """Announce at once that this worker has begun to shut down."""
        self._status = "stopping"
        self._wake.set()

    def stop(self) -> None:
        """Send the final "stopped" heartbeat (waiting a few seconds at most)."""
        self._done.set()
        self._wake.set()
        if self.is_alive():
            self.join(_FINAL_BEAT_TIMEOUT)

    def run(self) -> None:
        sent = None
        while not self._done.is_set():
            sent = self._status
            self.beat(sent)
            self._wake.wait(self.interval)
            self._wake.clear()
        if self._status == "stopping" and sent != "stopping":
            self.beat("stopping")  # a stop right after stopping() still announces both
        self.beat("stopped")

    def beat(self, status: WorkerStatus) -> bool:
        """Send one heartbeat; whether it went out. Never raises."""
        try:
            if not self._queue_ready:
                self.broker.ensure_queue(ORCHESTRATION_WORKER_HEARTBEATS_QUEUE)
                self._queue_ready = True
            self.broker.send(ORCHESTRATION_WORKER_HEARTBEATS_QUEUE, encode(self.message(status)))
            return True
        except Exception as exc:
            log.warning("worker heartbeat (%s) not sent: %s", status, exc)
            return False

    def message(self, status: WorkerStatus) -> WorkerHeartbeatMessage:
        """The heartbeat describing this worker right now."""
        return msgspec.structs.replace(
            self._identity, in_flight=self._in_flight(), sent_at=datetime.now(UTC), status=status
        )
