"""One timer thread for the worker's deadlines (step timeouts) and periodic work (heartbeat).

A thread per timer would cost a thread per in-flight step; a heap costs one thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class TimerHandle:
    """Returned by `call_later`; `cancel()` stops the call if it has not run yet."""

    def __init__(self, callback: Callable[[], None], scheduler: Scheduler) -> None:
        self.callback = callback
        self.cancelled = False
        self._scheduler = scheduler

    def cancel(self) -> None:
        """Skip the call."""
        if not self.cancelled:
            self.cancelled = True
            self._scheduler._note_cancelled()


class Scheduler:
    """Runs callbacks at monotonic times on its own daemon thread, one at a time."""

    def __init__(self, name: str = "tasker-scheduler") -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._order = itertools.count()  # ties in time keep insertion order
        self._cond = threading.Condition()
        self._stopped = False
        self._cancelled = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the timer thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; pending callbacks never run."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run `callback` after `delay` seconds."""
        handle = TimerHandle(callback, self)
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), handle))
            self._cond.notify_all()
        return handle

    def call_every(self, interval: float, callback: Callable[[], None]) -> None:
        """Run `callback` every `interval` seconds until the scheduler stops."""

        def tick() -> None:
            try:
                callback()
            finally:
                self.call_later(interval, tick)

        self.call_later(interval, tick)

    def _note_cancelled(self) -> None:
        # Cancelled timers are dropped lazily; compact when they dominate, so a stream of
        # steps with long timeouts that finish early does not grow the heap without bound.
        with self._cond:
            self._cancelled += 1
            if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _run(self) -> None:
        while (handle := self._next_due()) is not None:
            try:
                handle.callback()
            except Exception:
                log.exception("scheduled callback %r failed", handle.callback)

    def _next_due(self) -> TimerHandle | None:
        """Block until a live timer is due (returns it) or the scheduler stops (None)."""
        with self._cond:
            while not self._stopped:
                if not self._heap:
                    self._cond.wait()
                    continue
                due, _, handle = self._heap[0]
                if handle.cancelled:
                    heapq.heappop(self._heap)
                    self._cancelled = max(self._cancelled - 1, 0)
                elif (remaining := due - time.monotonic()) > 0:
                    self._cond.wait(remaining)
                else:
                    heapq.heappop(self._heap)
                    return handle
            return None
