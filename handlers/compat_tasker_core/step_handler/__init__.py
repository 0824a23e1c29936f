"""`tasker_core.step_handler`: the handler base class."""

from tasker.handlers.base import StepHandler

__all__ = ["StepHandler"]
