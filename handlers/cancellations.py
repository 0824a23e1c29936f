"""Cancelled tasks a worker has heard of, so that it skips their steps still in the queues.

The orchestrator broadcasts a `TaskCancelled` notice when a task is cancelled; a listener
thread keeps the task ids, bounded in number and in age. Forgetting one (or missing the
notice) only costs a wasted run: the state layer records that result without reviving the
task.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from uuid import UUID

from cachetools import TTLCache

from tasker.messaging.broker import Broker, Subscription
from tasker.messaging.messages import (
    CANCELLATIONS_CHANNEL,
    TaskCancelled,
    UndecodableMessageError,
    decode,
)

log = logging.getLogger(__name__)

#: Ids kept at most; the oldest go first. 100,000 UUIDs take a few MB.
DEFAULT_LIMIT = 100_000
#: How long an id is kept: longer than any sane queue backlog.
DEFAULT_TTL_SECONDS = 6 * 3600.0
_MAX_BACKOFF_SECONDS = 30.0


class CancelledTasks:
    """A bounded, time-limited set of cancelled task ids, and how many steps it skipped."""

    def __init__(
        self,
        *,
        limit: int = DEFAULT_LIMIT,
        ttl: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Full, it drops the least recently added id (ids are never read, only tested).
        self._ids: TTLCache[UUID, bool] = TTLCache(maxsize=limit, ttl=ttl, timer=clock)
        self._lock = threading.Lock()  # TTLCache is not thread-safe
        self.skipped = 0

    def add(self, task_uuid: UUID) -> None:
        with self._lock:
            self._ids.pop(task_uuid, None)  # a repeated notice starts the id's time again
            self._ids[task_uuid] = True

    def skip(self, task_uuid: UUID) -> bool:
        """Whether a step of `task_uuid` must be skipped (and count it if so)."""
        with self._lock:
            if task_uuid not in self._ids:
                return False
            self.skipped += 1
            return True

    def __contains__(self, task_uuid: object) -> bool:
        with self._lock:
            return task_uuid in self._ids

    def __len__(self) -> int:
        with self._lock:
            self._ids.expire()
            return len(self._ids)


class CancellationListener(threading.Thread):
    """Hears the orchestrator's cancellation notices and adds them to `cancelled`."""

    def __init__(
        self,
        broker: Broker,
        cancelled: CancelledTasks,
        *,
        poll: float,
        stopping: threading.Event,
    ) -> None:
        super().__init__(name="tasker-cancellations", daemon=True)
        self.broker = broker
        self.cancelled = cancelled
        self.poll = poll
        self.stopping = stopping

    def run(self) -> None:
        subscription: Subscription | None = None
        failures = 0
        try:
            while not self.stopping.is_set():
                try:
                    subscription = subscription or self.broker.subscribe(CANCELLATIONS_CHANNEL)
                    for payload in subscription.receive(self.poll):
                        self._note(payload)
                    failures = 0
                except Exception as exc:
                    failures += 1
                    pause = min(0.1 * 2**failures, _MAX_BACKOFF_SECONDS)
                    log.warning("cannot hear cancellations (retrying in %.1fs): %s", pause, exc)
                    self.stopping.wait(pause)
        finally:
            if subscription is not None:
                subscription.close()

    def _note(self, payload: bytes) -> None:
        try:
            notice = decode(payload)
        except UndecodableMessageError as exc:
            log.warning("ignoring an undecodable cancellation notice: %s", exc)
            return
        if isinstance(notice, TaskCancelled):
            log.info("task %s was cancelled: its queued steps will be skipped", notice.task_uuid)
            self.cancelled.add(notice.task_uuid)
