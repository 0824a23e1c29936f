"""Free handler slots: consumers reserve slots before receiving, so a worker never holds
more messages than it can start (backpressure stays in the broker, visible to others)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Slots:
    """A counting semaphore that hands out several units at once."""

    def __init__(self, capacity: int) -> None:
        self._free = capacity
        self._cond = threading.Condition()

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
        with self._cond:
            self._cond.wait_for(lambda: self._free > 0 or cancelled(), timeout)
            if self._free == 0 or cancelled():
                return 0
            taken = min(up_to, self._free)
            self._free -= taken
            return taken

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
