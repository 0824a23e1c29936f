"""The threads handlers run on.

Not `concurrent.futures.ThreadPoolExecutor`: its threads are joined at interpreter exit, so
one handler stuck past its timeout (a Python thread cannot be killed) would keep the worker
process from ever exiting. These threads are daemons: the process exits when the worker is
done, abandoning such a handler (its step was already reported as timed out).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

_STOP = object()


class HandlerPool:
    """`size` daemon threads taking jobs from one queue, in order."""

    def __init__(self, size: int, name: str = "tasker-handler") -> None:
        self._jobs: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{index}", daemon=True)
            for index in range(size)
        ]

    def start(self) -> None:
        """Start the threads."""
        for thread in self._threads:
            thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job` on the next free thread (callers bound how many are queued)."""
        self._jobs.put(job)

    def shutdown(self) -> None:
        """Let idle threads end; busy ones end after their current job. Does not wait."""
        for _ in self._threads:
            self._jobs.put(_STOP)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not _STOP:
            try:
                job()  # type: ignore[operator]
            except Exception:
                log.exception("handler job crashed the worker's bookkeeping")
