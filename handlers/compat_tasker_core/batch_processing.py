"""`tasker_core.batch_processing`: the Batchable mixin and its data types."""

from tasker.handlers.batch import Batchable, BatchAggregationScenario
from tasker.handlers.batch_types import (
    BatchAnalyzerOutcome,
    BatchWorkerConfig,
    BatchWorkerContext,
    BatchWorkerOutcome,
    CursorConfig,
)

__all__ = [
    "BatchAggregationScenario",
    "BatchAnalyzerOutcome",
    "BatchWorkerConfig",
    "BatchWorkerContext",
    "BatchWorkerOutcome",
    "Batchable",
    "CursorConfig",
]
