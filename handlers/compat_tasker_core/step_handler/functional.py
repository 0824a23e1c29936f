"""`tasker_core.step_handler.functional`: the decorator style, decisions and batches too."""

from tasker.handlers.decision import Decision
from tasker.handlers.functional import depends_on, inputs, step_handler
from tasker.handlers.functional_dynamic import (
    BatchConfig,
    batch_analyzer,
    batch_worker,
    decision_handler,
)

__all__ = [
    "BatchConfig",
    "Decision",
    "batch_analyzer",
    "batch_worker",
    "decision_handler",
    "depends_on",
    "inputs",
    "step_handler",
]
