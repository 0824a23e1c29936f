"""The benchmark's handler: 10 ms of (simulated) I/O."""

from __future__ import annotations

import time

from tasker.handlers import StepContext, StepHandler, StepHandlerResult


class Sleep10ms(StepHandler):
    handler_name = "bench.sleep_10ms"

    def call(self, context: StepContext) -> StepHandlerResult:
        time.sleep(0.01)
        return self.success({"slept_ms": 10})
