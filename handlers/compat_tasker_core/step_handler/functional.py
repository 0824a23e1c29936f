"""`tasker_core.step_handler.functional`: the decorator style (decision and batch
decorators come with dynamic workflows)."""

from tasker.handlers.functional import depends_on, inputs, step_handler

__all__ = ["depends_on", "inputs", "step_handler"]
