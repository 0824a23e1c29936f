"""A received step and where it is in its life, plus the table of jobs not yet reported.

States move one way: QUEUED -> RUNNING -> REPORTED, or QUEUED -> HANDED_BACK at shutdown.
Each move is a compare-and-set, so the handler finishing and its timeout firing (or a
shutdown handing it back) race safely: exactly one of them wins and reports.
"""

from __future__ import annotations

import enum
import threading
from datetime import UTC, datetime

from tasker.handlers.fence import AttemptKey
from tasker.messaging.broker import Delivery
from tasker.messaging.messages import StepMessage


class JobState(enum.Enum):
    """Where a job is."""

    QUEUED = "queued"
    RUNNING = "running"
    REPORTED = "reported"
    HANDED_BACK = "handed_back"


class Job:
    """One delivery of one step attempt being worked on by this process."""

    def __init__(self, delivery: Delivery, message: StepMessage) -> None:
        self.delivery = delivery
        self.message = message
        self.state = JobState.QUEUED
        self.started_at: datetime = datetime.now(UTC)
        self._lock = threading.Lock()

    @property
    def key(self) -> AttemptKey:
        """The attempt this job runs (the fence key)."""
        return (self.message.step_uuid, self.message.fence or self.message.attempt)

    def move(self, expected: JobState, new: JobState) -> bool:
        """Set `new` if the state is still `expected`; whether it did."""
        with self._lock:
            if self.state is not expected:
                return False
            self.state = new
            if new is JobState.RUNNING:
                self.started_at = datetime.now(UTC)
            return True


class JobTable:
    """Jobs received and not yet reported or handed back: what the heartbeat keeps hidden."""

    def __init__(self) -> None:
        self._jobs: dict[int, Job] = {}
        self._cond = threading.Condition()

    def add(self, job: Job) -> None:
        """Track `job`."""
        with self._cond:
            self._jobs[id(job)] = job

    def remove(self, job: Job) -> None:
        """Stop tracking `job` (reported or handed back)."""
        with self._cond:
            self._jobs.pop(id(job), None)
            self._cond.notify_all()

    def snapshot(self) -> list[Job]:
        """The jobs tracked right now."""
        with self._cond:
            return list(self._jobs.values())

    def __len__(self) -> int:
        with self._cond:
            return len(self._jobs)

    def wait_empty(self, timeout: float) -> bool:
        """Wait until no job is tracked; whether that happened within `timeout`."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._jobs, timeout)
