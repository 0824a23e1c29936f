"""Step discovery outside the result path: retries whose backoff elapsed, and tasks a
crash left between stages. Wakes at the next retry's due time and on a periodic sweep."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pykka

from tasker.actors.guarded import GuardedActor
from tasker.actors.messages import (
    EnqueueSteps,
    FinalizeTask,
    RepublishUnconfirmed,
    RetryDue,
    Sweep,
)
from tasker.messaging.broker import Broker
from tasker.state.repository import StalenessLimits, StateRepository

log = logging.getLogger(__name__)


class StepDiscovery(GuardedActor):
    def __init__(
        self,
        broker: Broker,
        repository: StateRepository,
        *,
        enqueuer: pykka.ActorRef[Any],
        finalizer: pykka.ActorRef[Any],
        sweep_interval: float,
        republish_after: float,
        staleness: StalenessLimits,
    ) -> None:
        super().__init__(broker)
        self.repository = repository
        self.enqueuer = enqueuer
        self.finalizer = finalizer
        self.sweep_interval = sweep_interval
        self.republish_after = republish_after
        self.staleness = staleness
        self._timers: list[threading.Timer] = []
        self._periodic: threading.Timer | None = None

    def handlers(self) -> dict[type[Any], Callable[[Any], Any]]:
        return {RetryDue: self.retry_due, Sweep: self.sweep}

    def on_start(self) -> None:
        self.actor_ref.tell(Sweep())

    def on_stop(self) -> None:
        for timer in self._timers:
            timer.cancel()

    def retry_due(self, message: RetryDue) -> None:
        delay = (message.at - datetime.now(UTC)).total_seconds()
        self._wake_in(max(delay, 0.0) + 0.005)  # a hair late, so the step is surely due

    def sweep(self, _: Sweep) -> None:
        try:
            self._enqueue_due_retries()
            self._resume_interrupted_tasks()
            if not self.broker.transactional:
                self.enqueuer.tell(RepublishUnconfirmed(self.republish_after))
            self._fail_stale_tasks()
        finally:
            self._schedule_next_sweep()

    def _enqueue_due_retries(self) -> None:
        due = self.repository.due_retry_steps()
        if due:
            self.enqueuer.tell(EnqueueSteps(tuple(due)))
        upcoming = self.repository.next_retry_at()
        if upcoming is not None and not due:
            self.retry_due(RetryDue(upcoming))

    def _resume_interrupted_tasks(self) -> None:
        # Only tasks idle for several sweeps: a task merely waiting its turn in a busy
        # enqueuer must not be announced again (that feeds back into the backlog).
        stalled = self.repository.unfinished_tasks_needing_attention(3 * self.sweep_interval)
        to_resume = []
        for task_uuid, status, trace_context in stalled:
            if status in ("evaluating_results", "blocked_by_failures"):
                # The task's stored trace: finalization joins it (telemetry).
                self.finalizer.tell(FinalizeTask(task_uuid, trace_context or {}))
            else:
                to_resume.append(task_uuid)
        ready = self.repository.ready_steps_of_tasks(to_resume) if to_resume else []
        if ready:
            self.enqueuer.tell(EnqueueSteps(tuple(ready)))

    def _fail_stale_tasks(self) -> None:
        for task_uuid in self.repository.fail_stale_tasks(self.staleness):
            log.warning("task %s was stale: moved to error and the dead letter queue", task_uuid)

    def _schedule_next_sweep(self) -> None:
        self._timers = [t for t in self._timers if t.is_alive()]
        if self._periodic is None or not self._periodic.is_alive():
            self._periodic = self._wake_in(self.sweep_interval)

    def _wake_in(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self._tell_sweep)
        timer.daemon = True
        timer.start()
        self._timers.append(timer)
        return timer

    def _tell_sweep(self) -> None:
        with contextlib.suppress(pykka.ActorDeadError):  # shutting down
            self.actor_ref.tell(Sweep())
