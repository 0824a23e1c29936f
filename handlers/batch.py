"""Batch processing helpers for handlers: the `Batchable` mixin (Tasker's names).

    class AnalyzeCsv(StepHandler, Batchable):            # the batchable step
        def call(self, context):
            ranges = self.create_cursor_ranges(total_rows, batch_size=200)
            return self.batch_analyzer_success(cursor_configs=ranges, total_items=total_rows,
                                               worker_template_name="process_csv_batch")

    class ProcessCsvBatch(StepHandler, Batchable):       # each batch_worker instance
        def call(self, context):
            if (done := self.handle_no_op_worker(context)) is not None:
                return done
            batch = self.get_batch_context(context)
            ...                                          # rows batch.start_cursor..end_cursor
            return self.batch_worker_success(items_processed=n, results=[...])

A worker may `self.checkpoint_yield(cursor, items_processed, accumulated_results)` to save
its progress and be re-dispatched; it resumes from `context.checkpoint_cursor`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

from tasker.handlers.batch_types import (
    BATCH_KEY,
    BatchAnalyzerOutcome,
    BatchWorkerConfig,
    BatchWorkerContext,
    BatchWorkerOutcome,
    CheckpointYield,
    CursorConfig,
)
from tasker.handlers.context import StepContext
from tasker.handlers.result import StepHandlerResult

NO_BATCHES = "no_batches"
WITH_BATCHES = "with_batches"


@dataclass(frozen=True)
class BatchAggregationScenario:
    """What a convergence step aggregates: real batches, or the no-op worker of none."""

    kind: str
    batchable_result: Any = None
    batch_results: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def is_no_batches(self) -> bool:
        return self.kind == NO_BATCHES

    @property
    def worker_count(self) -> int:
        return len(self.batch_results)


class Batchable:
    """Mixin for batchable (analyzer), batch worker and aggregating step handlers."""

    # Cursor ranges

    def create_cursor_config(
        self, start: int, end: int, step_size: int = 1, metadata: dict[str, Any] | None = None
    ) -> CursorConfig:
        """One range, start inclusive, end exclusive."""
        return CursorConfig(start, end, step_size, metadata or {})

    def create_cursor_ranges(
        self, total_items: int, batch_size: int, step_size: int = 1, max_batches: int | None = None
    ) -> list[CursorConfig]:
        """Ranges of `batch_size` items (0-based); fewer, larger ones if over `max_batches`."""
        if total_items <= 0:
            return []
        if max_batches and -(-total_items // batch_size) > max_batches:
            batch_size = -(-total_items // max_batches)
        return [
            CursorConfig(start, min(start + batch_size, total_items), step_size)
            for start in range(0, total_items, batch_size)
        ]

    def create_cursor_configs(self, total_items: int, worker_count: int) -> list[BatchWorkerConfig]:
        """`worker_count` near-equal ranges (ceiling division), as Tasker's workers number them."""
        if worker_count <= 0:
            raise ValueError("worker_count must be > 0")
        if total_items <= 0:
            return []
        per_worker = -(-total_items // worker_count)
        configs = []
        for index, start in enumerate(range(0, total_items, per_worker)):
            end = min(start + per_worker, total_items)
            batch_id = f"{index + 1:03d}"
            configs.append(
                BatchWorkerConfig(batch_id, start, end, end - start, index, worker_count)
            )
        return configs

    def create_batch_outcome(
        self,
        total_items: int,
        batch_size: int,
        step_size: int = 1,
        batch_metadata: dict[str, Any] | None = None,
    ) -> BatchAnalyzerOutcome:
        """Ranges for `total_items` in batches of `batch_size`, ready for the analyzer."""
        ranges = self.create_cursor_ranges(total_items, batch_size, step_size)
        return BatchAnalyzerOutcome(ranges, total_items, batch_metadata or {})

    # Analyzer results

    def batch_analyzer_success(
        self,
        outcome: BatchAnalyzerOutcome | None = None,
        metadata: dict[str, Any] | None = None,
        worker_template_name: str = "batch_worker",
        cursor_configs: Sequence[Any] | None = None,
        total_items: int | None = None,
        batch_metadata: dict[str, Any] | None = None,
    ) -> StepHandlerResult:
        """Create one worker per range (an outcome, or `cursor_configs` + `total_items`)."""
        if cursor_configs is None and outcome is not None:
            cursor_configs, total_items = outcome.cursor_configs, outcome.total_items
            batch_metadata = batch_metadata or outcome.batch_metadata
        configs = [_cursor_dict(index, entry) for index, entry in enumerate(cursor_configs or [])]
        if not configs:
            reason = (batch_metadata or {}).get("reason", "empty_dataset")
            return self.no_batches_outcome(reason, batch_metadata)
        batch_outcome = {
            "type": "create_batches",
            "worker_template_name": worker_template_name,
            "worker_count": len(configs),
            "cursor_configs": configs,
            "total_items": total_items or 0,
        }
        result: dict[str, Any] = {
            BATCH_KEY: batch_outcome,
            "worker_count": len(configs),
            "total_items": total_items or 0,
        }
        if batch_metadata:
            result["batch_metadata"] = batch_metadata
        return StepHandlerResult.success(result, {**(metadata or {}), "batch_analyzer": True})

    def no_batches_outcome(
        self, reason: str, metadata: dict[str, Any] | None = None
    ) -> StepHandlerResult:
        """Nothing to split: the orchestrator creates one no-op worker."""
        result = {BATCH_KEY: {"type": "no_batches"}, "reason": reason, **(metadata or {})}
        return StepHandlerResult.success(result, {"batch_analyzer": True, "no_batches": True})

    # Worker inputs

    def get_batch_context(self, context: StepContext) -> BatchWorkerContext | None:
        """This worker's range and settings, or None when the step is no batch worker."""
        return BatchWorkerContext.from_step_context(context)

    def get_batch_worker_inputs(self, context: StepContext) -> BatchWorkerContext | None:
        """Alias of `get_batch_context` (Tasker's BatchWorkerInputs, as one object)."""
        return self.get_batch_context(context)

    def handle_no_op_worker(self, context: StepContext) -> StepHandlerResult | None:
        """A success for the no-op worker of a batchable step that found no batches, or None."""
        batch = self.get_batch_context(context)
        if batch is None or not batch.is_no_op:
            return None
        return StepHandlerResult.success(
            {
                "batch_id": batch.batch_id,
                "no_op": True,
                "processed_count": 0,
                "message": "No batches to process",
                "processed_at": datetime.now(UTC).isoformat(),
            }
        )

    # Worker results

    def create_worker_outcome(self, items_processed: int, **fields: Any) -> BatchWorkerOutcome:
        """A worker outcome (`items_succeeded` defaults to `items_processed`)."""
        fields.setdefault("items_succeeded", items_processed)
        return BatchWorkerOutcome(items_processed, **fields)

    def batch_worker_success(
        self,
        outcome: BatchWorkerOutcome | None = None,
        metadata: dict[str, Any] | None = None,
        items_processed: int | None = None,
        items_succeeded: int | None = None,
        items_failed: int = 0,
        items_skipped: int = 0,
        results: list[Any] | None = None,
        errors: list[Any] | None = None,
        last_cursor: Any = None,
        batch_metadata: dict[str, Any] | None = None,
    ) -> StepHandlerResult:
        """The worker finished its range (an outcome, or the counts as keywords)."""
        if outcome is None:
            processed = items_processed or 0
            outcome = BatchWorkerOutcome(
                processed,
                processed if items_succeeded is None else items_succeeded,
                items_failed,
                items_skipped,
                results or [],
                errors or [],
                last_cursor,
                batch_metadata or {},
            )
        return StepHandlerResult.success(
            _worker_result(outcome), {**(metadata or {}), "batch_worker": True}
        )

    def batch_worker_partial_failure(
        self,
        outcome: BatchWorkerOutcome,
        message: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> StepHandlerResult:
        """A success that reports some items failed (soft failures, for the aggregator)."""
        result = {**_worker_result(outcome), "partial_failure": True}
        if message:
            result["partial_failure_message"] = message
        extra = {"batch_worker": True, "had_failures": True}
        return StepHandlerResult.success(result, {**(metadata or {}), **extra})

    def checkpoint_yield(
        self, cursor: Any, items_processed: int, accumulated_results: Any = None
    ) -> NoReturn:
        """Save progress and stop; the step is re-dispatched and resumes from `cursor`."""
        raise CheckpointYield(cursor, items_processed, accumulated_results)

    # Aggregation (the convergence step)

    def detect_aggregation_scenario(
        self,
        dependency_results: dict[str, Any],
        batchable_step_name: str,
        batch_worker_prefix: str,
    ) -> BatchAggregationScenario:
        """Which case the convergence step is in: real batches, or none (the no-op worker)."""
        workers = sorted(n for n in dependency_results if n.startswith(batch_worker_prefix))
        results = [(name, _unwrap(dependency_results[name])) for name in workers]
        batchable = _unwrap(dependency_results.get(batchable_step_name))
        if all(isinstance(r, dict) and r.get("no_op") for _, r in results):
            return BatchAggregationScenario(NO_BATCHES, batchable, [])
        return BatchAggregationScenario(WITH_BATCHES, batchable, results)

    def no_batches_aggregation_result(
        self, zero_metrics: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The aggregate of no batches: the zero metrics, worker_count 0."""
        return {**(zero_metrics or {}), "worker_count": 0, "scenario": NO_BATCHES}

    def aggregate_batch_worker_results(
        self,
        scenario: BatchAggregationScenario,
        zero_metrics: dict[str, Any] | None = None,
        aggregation_fn: Callable[[list[Any]], dict[str, Any]] | None = None,
    ) -> StepHandlerResult:
        """Success with the aggregate: `aggregation_fn` over worker results, or the default."""
        if scenario.is_no_batches:
            return StepHandlerResult.success(self.no_batches_aggregation_result(zero_metrics))
        results = [result for _, result in scenario.batch_results]
        combine = aggregation_fn or self.aggregate_worker_results
        return StepHandlerResult.success(
            {**combine(results), "worker_count": scenario.worker_count, "scenario": WITH_BATCHES}
        )

    @staticmethod
    def aggregate_worker_results(worker_results: list[Any]) -> dict[str, Any]:
        """Totals over workers' `batch_worker_success` results (isolated ones counted)."""
        present = [r for r in worker_results if isinstance(r, dict)]
        totals = {
            key: sum(int(r.get(key) or 0) for r in present)
            for key in ("items_processed", "items_succeeded", "items_failed", "items_skipped")
        }
        errors = [e for r in present for e in r.get("errors") or []]
        processed = totals["items_processed"]
        return {
            "total_processed": processed,
            "total_succeeded": totals["items_succeeded"],
            "total_failed": totals["items_failed"],
            "total_skipped": totals["items_skipped"],
            "batch_count": len(worker_results),
            "isolated_count": sum(bool(r.get("isolated")) for r in present),
            "success_rate": totals["items_succeeded"] / processed if processed else 0.0,
            "errors": errors[:100],
            "error_count": len(errors),
        }


def _cursor_dict(index: int, entry: Any) -> dict[str, Any]:
    """A range as the orchestrator reads it, from any of the helpers' range types."""
    if isinstance(entry, CursorConfig):
        start, end = entry.start_cursor, entry.end_cursor
    elif isinstance(entry, BatchWorkerConfig):
        start, end = entry.cursor_start, entry.cursor_end
    elif isinstance(entry, dict):
        start = entry.get("start_cursor", entry.get("cursor_start"))
        end = entry.get("end_cursor", entry.get("cursor_end"))
    else:
        raise TypeError(f"cursor config {index} is a {type(entry).__name__}, not a range")
    size = end - start if isinstance(start, int) and isinstance(end, int) else None
    batch_id = f"{index + 1:03d}"
    return {"batch_id": batch_id, "start_cursor": start, "end_cursor": end, "batch_size": size}


def _worker_result(outcome: BatchWorkerOutcome) -> dict[str, Any]:
    result: dict[str, Any] = {
        "items_processed": outcome.items_processed,
        "items_succeeded": outcome.items_succeeded,
        "items_failed": outcome.items_failed,
        "items_skipped": outcome.items_skipped,
        "last_cursor": outcome.last_cursor,
        "batch_metadata": outcome.batch_metadata,
    }
    if outcome.results:
        result["results"] = outcome.results
    if outcome.errors:
        result["errors"] = outcome.errors
    return result


def _unwrap(value: Any) -> Any:
    """A dependency result without its `{"result": ...}` envelope (as get_dependency_result)."""
    if isinstance(value, dict) and "result" in value and len(value) == 1:
        return value["result"]
    return value
