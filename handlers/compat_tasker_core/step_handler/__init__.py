"""`tasker_core.step_handler`: the handler base classes."""

from tasker.handlers.base import StepHandler
from tasker.handlers.decision import DecisionHandler

__all__ = ["DecisionHandler", "StepHandler"]
