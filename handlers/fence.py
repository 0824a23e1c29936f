"""The in-process dispatch fence: one (step, dispatch) runs at most once per worker process.

A broker delivers at least once, so the same attempt can arrive twice (a redelivery after a
visibility timeout, or a republish by the orchestrator). Across processes the orchestrator
fences results by attempt; inside one process this set stops the duplicate from running.
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict
from uuid import UUID

AttemptKey = tuple[UUID, int]


class Claim(enum.Enum):
    """What `AttemptFence.claim` found."""

    NEW = "new"  # run it
    RUNNING = "running"  # a duplicate of an attempt running here now
    FINISHED = "finished"  # a duplicate of an attempt already reported from here


class AttemptFence:
    """Attempts running now, plus the most recently reported ones (bounded memory)."""

    def __init__(self, remember_finished: int = 10_000) -> None:
        self._running: set[AttemptKey] = set()
        self._finished: OrderedDict[AttemptKey, None] = OrderedDict()
        self._limit = remember_finished
        self._lock = threading.Lock()

    def claim(self, key: AttemptKey) -> Claim:
        """Mark `key` running if it is new; say what it was otherwise."""
        with self._lock:
            if key in self._running:
                return Claim.RUNNING
            if key in self._finished:
                return Claim.FINISHED
            self._running.add(key)
            return Claim.NEW

    def finish(self, key: AttemptKey) -> None:
        """`key` was reported: later duplicates are dropped."""
        with self._lock:
            self._running.discard(key)
            self._finished[key] = None
            while len(self._finished) > self._limit:
                self._finished.popitem(last=False)

    def release(self, key: AttemptKey) -> None:
        """`key` was not reported (handed back, or the reply failed): a redelivery may run it."""
        with self._lock:
            self._running.discard(key)
