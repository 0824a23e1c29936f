"""The supervisor: turns the death of any actor or pump into a clean, non-zero exit.

A process manager (systemd, Kubernetes) then restarts the orchestrator; half a pipeline
running silently would be worse than none.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import pykka

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_COMPONENT_DIED = 70  # EX_SOFTWARE


class Supervisor:
    def __init__(
        self,
        actors: Sequence[pykka.ActorRef[Any]],
        threads: Sequence[threading.Thread],
        *,
        check_interval: float = 0.5,
    ) -> None:
        self.actors = list(actors)
        self.threads = list(threads)
        self.check_interval = check_interval
        self._stop_requested = threading.Event()

    def request_stop(self) -> None:
        """Ask for a graceful shutdown (from a signal handler or another thread)."""
        self._stop_requested.set()

    def watch(self) -> int:
        """Block until a stop is requested (exit 0) or a component dies (non-zero)."""
        while not self._stop_requested.wait(self.check_interval):
            dead = self._dead_components()
            if dead:
                log.critical("orchestrator component(s) died: %s; exiting", ", ".join(dead))
                return EXIT_COMPONENT_DIED
        return EXIT_OK

    def _dead_components(self) -> list[str]:
        dead = [ref.actor_class.__name__ for ref in self.actors if not ref.is_alive()]
        dead += [thread.name for thread in self.threads if not thread.is_alive()]
        return dead
