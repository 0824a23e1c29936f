"""`tasker_core`, as Tasker's Python handlers import it, re-exported from our API.

Loaded as `tasker_core` only after `enable_tasker_core_compat()` (see `handlers/compat.py`).
Every import here is absolute: under the name `tasker_core` a relative import would
resolve inside this shim package instead of our API.
"""

from tasker.handlers.base import StepHandler
from tasker.handlers.batch import Batchable
from tasker.handlers.context import StepContext
from tasker.handlers.decision import (
    Decision,
    DecisionHandler,
    DecisionMixin,
    DecisionPointOutcome,
    DecisionType,
)
from tasker.handlers.errors import PermanentError, RetryableError
from tasker.handlers.functional import depends_on, inputs, step_handler
from tasker.handlers.registry import HandlerRegistry
from tasker.handlers.result import ErrorType, StepHandlerResult

__all__ = [
    "Batchable",
    "Decision",
    "DecisionHandler",
    "DecisionMixin",
    "DecisionPointOutcome",
    "DecisionType",
    "ErrorType",
    "HandlerRegistry",
    "PermanentError",
    "RetryableError",
    "StepContext",
    "StepHandler",
    "StepHandlerResult",
    "depends_on",
    "inputs",
    "step_handler",
]
