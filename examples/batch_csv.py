"""Handlers of the batch CSV example: analyze, process in batches (with checkpoints), sum.

The CSV is generated in code, deterministically (`csv_text`), so the example needs no file:
row i (1-based) is `SKU-i`, one of five categories, a price and a stock level. The analyzer
splits the rows into batches of `batch_size`; each worker sums its rows' inventory value and
counts categories, yielding a checkpoint every `checkpoint_interval` rows (it is re-dispatched
and resumes where it stopped); the aggregate adds the workers' totals up.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from functools import lru_cache
from typing import Any

from tasker.handlers import Batchable, StepContext, StepHandler, StepHandlerResult

CATEGORIES = ("books", "electronics", "garden", "kitchen", "toys")
WORKER = "process_csv_batch"


def csv_text(row_count: int) -> str:
    """The example's CSV: a header and `row_count` rows."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["sku", "category", "price_cents", "stock"])
    for i in range(1, row_count + 1):
        writer.writerow([f"SKU-{i:05d}", CATEGORIES[i % 5], 100 + (i * 37) % 900, (i * 13) % 50])
    return out.getvalue()


@lru_cache(maxsize=4)
def csv_rows(row_count: int) -> tuple[dict[str, str], ...]:
    """The parsed rows (as a worker would read them from the file)."""
    return tuple(csv.DictReader(io.StringIO(csv_text(row_count))))


def summarize(rows: Any) -> dict[str, Any]:
    """Inventory value (cents) and rows per category."""
    counts = Counter(row["category"] for row in rows)
    value = sum(int(row["price_cents"]) * int(row["stock"]) for row in rows)
    return {"inventory_value_cents": value, "category_counts": dict(sorted(counts.items()))}


class AnalyzeCsv(StepHandler, Batchable):
    handler_name = "examples.batch_csv.analyze"

    def call(self, context: StepContext) -> StepHandlerResult:
        total = len(csv_rows(context.get_input("row_count")))
        ranges = self.create_cursor_ranges(total, context.get_config("batch_size"))
        return self.batch_analyzer_success(
            cursor_configs=ranges, total_items=total, worker_template_name=WORKER
        )


class ProcessCsvBatch(StepHandler, Batchable):
    handler_name = "examples.batch_csv.process_batch"

    def call(self, context: StepContext) -> StepHandlerResult:
        no_op = self.handle_no_op_worker(context)
        if no_op is not None:
            return no_op
        batch = self.get_batch_context(context)
        assert batch is not None  # a batch_worker instance always has its cursor
        start = context.checkpoint_cursor if context.has_checkpoint() else batch.start_cursor
        done = context.accumulated_results or {"rows": 0, "value": 0, "counts": {}, "resumes": 0}
        if context.has_checkpoint():
            done = {**done, "resumes": done["resumes"] + 1}
        end = min(start + context.get_config("checkpoint_interval"), batch.end_cursor)
        part = summarize(csv_rows(context.get_input("row_count"))[start:end])
        done = _add(done, part, end - start)
        if end < batch.end_cursor:
            self.checkpoint_yield(end, done["rows"], accumulated_results=done)
        return self.batch_worker_success(
            items_processed=done["rows"],
            last_cursor=end,
            batch_metadata={
                "batch_id": batch.batch_id,
                "inventory_value_cents": done["value"],
                "category_counts": done["counts"],
                "resumes": done["resumes"],
            },
        )


def _add(done: dict[str, Any], part: dict[str, Any], rows: int) -> dict[str, Any]:
    counts = Counter(done["counts"]) + Counter(part["category_counts"])
    return {
        "rows": done["rows"] + rows,
        "value": done["value"] + part["inventory_value_cents"],
        "counts": dict(sorted(counts.items())),
        "resumes": done["resumes"],
    }


class AggregateCsvResults(StepHandler, Batchable):
    handler_name = "examples.batch_csv.aggregate"

    def call(self, context: StepContext) -> StepHandlerResult:
        scenario = self.detect_aggregation_scenario(
            context.dependency_results, "analyze_csv", f"{WORKER}_"
        )
        zero = {"total_processed": 0, "inventory_value_cents": 0, "category_counts": {}}
        return self.aggregate_batch_worker_results(scenario, zero, _totals)


def _totals(results: list[Any]) -> dict[str, Any]:
    metadata = [r["batch_metadata"] for r in results]
    counts: Counter[str] = Counter()
    for entry in metadata:
        counts.update(entry["category_counts"])
    return {
        "total_processed": sum(r["items_processed"] for r in results),
        "inventory_value_cents": sum(m["inventory_value_cents"] for m in metadata),
        "category_counts": dict(sorted(counts.items())),
        "resumes": sum(m["resumes"] for m in metadata),
    }
