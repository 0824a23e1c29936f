"""Free handler slots: consumers reserve slots before receiving, so a worker never holds
more messages than it can start (backpressure stays in the broker, visible to others)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable


class Slots:
    """A counting semaphore that hands out several units at once, first come first served:
    a consumer that gives its slots back and asks again queues behind those already waiting
    (otherwise one namespace's consumer can starve the others of a worker's slots)."""

    def __init__(self, capacity: int) -> None:
        self._free = capacity
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()

    @property
    def free(self) -> int:
        """Slots free right now."""
        with self._cond:
            return self._free

    def reserve(
        self, up_to: int, timeout: float, cancelled: Callable[[], bool] = lambda: False
    ) -> int:
        """Take between 1 and `up_to` free slots, waiting up to `timeout`.

        Returns 0 when none came in time, or when `cancelled()` turned true (see `wake`).
        """
        turn = object()
        with self._cond:
            self._waiting.append(turn)
            try:
                self._cond.wait_for(
                    lambda: (self._free > 0 and self._waiting[0] is turn) or cancelled(), timeout
                )
                if self._free == 0 or self._waiting[0] is not turn or cancelled():
                    return 0
                taken = min(up_to, self._free)
                self._free -= taken
                return taken
            finally:
                self._waiting.remove(turn)
                self._cond.notify_all()  # the next in line may go now

    def release(self, count: int = 1) -> None:
        """Give back `count` slots."""
        if count <= 0:
            return
        with self._cond:
            self._free += count
            self._cond.notify_all()

    def wake(self) -> None:
        """Let waiters re-check their conditions (used at shutdown)."""
        with self._cond:
            self._cond.notify_all()
