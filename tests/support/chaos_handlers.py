"""Handlers for chaos tests: each execution is logged, so a test can count them.

Every execution appends `<step_uuid> <fence>` to a per-process file in
$TASKER_CHAOS_LOG_DIR (one O_APPEND write per line: lines never interleave).
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from tasker.handlers import StepContext, step_handler


def _record(context: StepContext) -> None:
    directory = os.environ.get("TASKER_CHAOS_LOG_DIR")
    if directory:
        line = f"{context.step_uuid} {context.step_name}\n".encode()
        fd = os.open(f"{directory}/exec-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def _work(context: StepContext) -> int:
    _record(context)
    time.sleep(random.uniform(0.005, 0.03))  # long enough to be killed mid-step
    total = context.get_input_or("seed", 1)
    for name in sorted(context.dependency_results):
        total += context.get_dependency_result(name)
    return int(total)


@step_handler("chaos.work")
def work(context: StepContext) -> dict[str, Any]:
    return {"result": _work(context)}
