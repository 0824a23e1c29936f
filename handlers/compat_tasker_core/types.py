"""`tasker_core.types`: the result, context and error-type names."""

from tasker.handlers.context import StepContext
from tasker.handlers.result import ErrorType, StepHandlerResult

__all__ = ["ErrorType", "StepContext", "StepHandlerResult"]
