"""Handlers of the worker-runtime acceptance tests: each records what it did, where.

Every event is one JSON line appended to `<TASKER_TEST_SIDE_EFFECTS>/<pid>.jsonl`, so the
test process can count executions per step and see which worker process ran them, the way
a real handler's side effect (a charge, an email) would be observed from outside.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from tasker.handlers import StepContext, StepHandler, StepHandlerResult

SIDE_EFFECTS_ENV = "TASKER_TEST_SIDE_EFFECTS"
_lock = threading.Lock()


def record_event(event: str, context: StepContext) -> None:
    """Append one event for this step attempt to this process's side-effect log."""
    line = json.dumps(
        {
            "event": event,
            "step": str(context.step_uuid),
            "task": str(context.task_uuid),
            "attempt": context.attempt,
            "pid": os.getpid(),
            "at": time.time(),
        }
    )
    path = Path(os.environ[SIDE_EFFECTS_ENV]) / f"{os.getpid()}.jsonl"
    with _lock, path.open("a") as log:
        log.write(line + "\n")


def read_events(directory: Path) -> list[dict[str, Any]]:
    """Every complete event in the side-effect logs of `directory`, oldest first."""
    events = []
    for path in directory.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            if line.endswith("}"):  # a line being written is skipped until complete
                events.append(json.loads(line))
    return sorted(events, key=lambda event: event["at"])


class Record(StepHandler):
    """The side effect itself: one "ran" event after a short piece of work."""

    handler_name = "worker_runtime.record"

    def call(self, context: StepContext) -> StepHandlerResult:
        time.sleep(0.01)
        record_event("ran", context)
        return self.success({"pid": os.getpid()})


class Slow(StepHandler):
    """Sleeps the task context's `seconds`, recording when it started and finished."""

    handler_name = "worker_runtime.slow"

    def call(self, context: StepContext) -> StepHandlerResult:
        record_event("started", context)
        time.sleep(float(context.get_input_or("seconds", 3.0)))
        record_event("finished", context)
        return self.success({"pid": os.getpid()})


class SlowFirstAttempt(StepHandler):
    """Overruns a 1 s timeout on its first attempt; later attempts return at once."""

    handler_name = "worker_runtime.slow_first_attempt"

    def call(self, context: StepContext) -> StepHandlerResult:
        record_event("started", context)
        if context.retry_count == 0:
            time.sleep(3.0)
        record_event("finished", context)
        return self.success({"attempt": context.attempt})
