"""`tasker_core.types`: the result, context, error-type, decision and batch type names."""

from tasker.handlers.batch_types import (
    BatchAnalyzerOutcome,
    BatchWorkerContext,
    BatchWorkerOutcome,
    CursorConfig,
)
from tasker.handlers.context import StepContext
from tasker.handlers.decision import DecisionPointOutcome, DecisionType
from tasker.handlers.result import ErrorType, StepHandlerResult

__all__ = [
    "BatchAnalyzerOutcome",
    "BatchWorkerContext",
    "BatchWorkerOutcome",
    "CursorConfig",
    "DecisionPointOutcome",
    "DecisionType",
    "ErrorType",
    "StepContext",
    "StepHandlerResult",
]
