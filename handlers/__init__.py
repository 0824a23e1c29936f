"""Handlers: the API step handlers are written against, and the worker that runs them.

    from tasker.handlers import StepHandler, StepContext, StepHandlerResult

The worker runtime lives in `tasker.handlers.worker` (`Worker`, `run_worker`); this package
imports only the handler API, so a handler module pulls in no threads or broker code.
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
from tasker.handlers.functional_dynamic import (
    BatchConfig,
    batch_analyzer,
    batch_worker,
    decision_handler,
)
from tasker.handlers.result import ErrorType, StepHandlerResult

__all__ = [
    "BatchConfig",
    "Batchable",
    "Decision",
    "DecisionHandler",
    "DecisionMixin",
    "DecisionPointOutcome",
    "DecisionType",
    "ErrorType",
    "PermanentError",
    "RetryableError",
    "StepContext",
    "StepHandler",
    "StepHandlerResult",
    "batch_analyzer",
    "batch_worker",
    "decision_handler",
    "depends_on",
    "inputs",
    "step_handler",
]
