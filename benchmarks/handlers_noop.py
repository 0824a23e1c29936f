"""The benchmarks' no-op handler: measures the engine, not the work."""

from __future__ import annotations

from tasker.handlers import StepContext, StepHandler, StepHandlerResult


class Noop(StepHandler):
    handler_name = "bench.noop"

    def call(self, context: StepContext) -> StepHandlerResult:
        return self.success({"ok": True})
