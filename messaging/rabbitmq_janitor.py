"""Looks after links whose owning thread is not inside the broker.

A thread blocked in `receive` pumps its own link and runs its own maintenance. But a
worker's consumer thread may stop calling `receive` for a long time (all its slots busy
with long steps), and a thread that has finished leaves its link behind while other
threads still hold deliveries from it. Nobody would then expire or lease those deliveries,
answer RabbitMQ's heartbeats (a missed heartbeat closes the connection, requeueing
everything on it) or close the link. The janitor does, on idle links only: it takes a
link's `busy` lock without waiting, so it never drives pika concurrently with the owner.
It sleeps until the earliest thing due, so an idle broker costs one wake-up per
`idle_pump` seconds.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from .rabbitmq_connection import Link, ThreadLinks, classify, describe

log = logging.getLogger(__name__)

_BUSY_RETRY = 0.05  # a link busy outside a wait is looked at again this soon
_MIN_SLEEP = 0.002


class Janitor:
    """One daemon thread per broker, started on first use."""

    def __init__(
        self, links: ThreadLinks, service: Callable[[Link], float], *, idle_pump: float
    ) -> None:
        self._links = links
        self._service = service  # pumps and maintains a link (lock held); next due time
        self._idle_pump = idle_pump
        self._wakeup = threading.Event()
        self._planned = math.inf  # while a round runs, every nudge wakes the next one
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tasker-rabbitmq-janitor", daemon=True
                )
                self._thread.start()

    def nudge(self, due: float) -> None:
        """Something is due at `due`: wake up earlier than planned if needed."""
        if due < self._planned:
            self._wakeup.set()

    def stop(self) -> None:
        self._wakeup.set()

    def _run(self) -> None:
        while not self._links.closed:
            self._wakeup.clear()
            self._planned = math.inf
            try:
                planned = self._round()
            except Exception:  # a bug: keep looking after the links regardless
                log.exception("RabbitMQ janitor round failed")
                planned = time.monotonic() + 1.0
            self._planned = planned
            self._wakeup.wait(max(_MIN_SLEEP, planned - time.monotonic()))

    def _round(self) -> float:
        now = time.monotonic()
        planned = now + self._idle_pump
        for link in self._links.snapshot():
            if self._links.retire(link):
                continue
            due = min(link.next_due, link.pumped_at + self._idle_pump)
            if due <= now:
                if link.busy.acquire(blocking=False):
                    self._serve(link)
                    due = min(link.next_due, link.pumped_at + self._idle_pump)
                else:  # its holder maintains it while it waits in receive
                    due = max(now + _BUSY_RETRY, link.attended_until)
            planned = min(planned, due)
        return planned

    def _serve(self, link: Link) -> None:
        try:
            if link.alive:
                link.next_due = self._service(link)
        except Exception as exc:
            if classify(exc) is None:
                log.exception("RabbitMQ link maintenance failed")
            else:
                log.warning("RabbitMQ connection lost while idle: %s", describe(exc))
            link.break_()
        finally:
            link.release()
