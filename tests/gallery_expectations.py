"""What each gallery example must produce: its context, the steps created, exact results.

Shared by the in-process integration test and the end-to-end acceptance test, so both
hold the examples to the same numbers. Expected values are computed here independently of
the example handlers (closed formulas or plain loops over the same generated data).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Expectation:
    template: str
    context: dict[str, Any]
    steps: frozenset[str]
    results: dict[str, Any] = field(default_factory=dict)  # step name -> exact result
    attempts: dict[str, int] = field(default_factory=dict)  # step name -> attempts (else 1)


def _power_results(values: dict[str, int]) -> dict[str, Any]:
    return {name: {"result": value} for name, value in values.items()}


TREE = Expectation(
    "tree_workflow",
    {"even_number": 2},
    frozenset(
        [
            "tree_root",
            "tree_branch_left",
            "tree_branch_right",
            "tree_leaf_d",
            "tree_leaf_e",
            "tree_leaf_f",
            "tree_leaf_g",
            "tree_final_convergence",
        ]
    ),
    _power_results(
        {"tree_root": 4, "tree_branch_left": 16, "tree_branch_right": 16, "tree_leaf_d": 256}
        | {"tree_leaf_e": 256, "tree_leaf_f": 256, "tree_leaf_g": 256}
        | {"tree_final_convergence": 256**4}
    ),
)

MIXED_DAG = Expectation(
    "mixed_dag_workflow",
    {"even_number": 2},
    frozenset(
        [
            "dag_init",
            "dag_process_left",
            "dag_process_right",
            "dag_validate",
            "dag_transform",
            "dag_analyze",
            "dag_finalize",
        ]
    ),
    _power_results(
        {"dag_init": 4, "dag_process_left": 16, "dag_process_right": 64, "dag_validate": 1024}
        | {"dag_transform": 256, "dag_analyze": 4096, "dag_finalize": 1024 + 256 + 4096}
    ),
)


def approval(amount: int, approvers: list[str], route_type: str) -> Expectation:
    branches = {"system": "auto_approve", "manager": "manager_approval"}
    branches["finance"] = "finance_review"
    created = [branches[a] for a in approvers]
    final = {"approved": True, "approvers": approvers, "route_type": route_type, "amount": amount}
    branch_results = {
        name: {"approved": True, "approver": approver, "amount": amount}
        for approver, name in zip(approvers, created, strict=True)
    }
    return Expectation(
        "conditional_approval",
        {"amount": amount, "requester": "ada", "purpose": "laptop"},
        frozenset(["validate_request", "routing_decision", *created, "finalize_approval"]),
        {"finalize_approval": final} | branch_results,
    )


APPROVAL_SMALL = approval(500, ["system"], "auto_approval")
APPROVAL_MEDIUM = approval(2500, ["manager"], "manager_only")
APPROVAL_LARGE = approval(10_000, ["manager", "finance"], "dual_approval")


def csv_summary(rows: int, batch_size: int = 200) -> dict[str, Any]:
    """The aggregate of the batch CSV example, by formula over the generated rows."""
    categories = ("books", "electronics", "garden", "kitchen", "toys")
    value = sum((100 + (i * 37) % 900) * ((i * 13) % 50) for i in range(1, rows + 1))
    counts = Counter(categories[i % 5] for i in range(1, rows + 1))
    workers = -(-rows // batch_size)
    return {
        "total_processed": rows,
        "inventory_value_cents": value,
        "category_counts": dict(sorted(counts.items())),
        "resumes": workers,  # each 200-row worker yields once, at row 100, and resumes
        "worker_count": workers,
        "scenario": "with_batches",
    }


def batch_csv(rows: int) -> Expectation:
    workers = [f"process_csv_batch_{i:03d}" for i in range(1, -(-rows // 200) + 1)]
    return Expectation(
        "batch_csv_workflow",
        {"row_count": rows},
        frozenset(["analyze_csv", *workers, "aggregate_csv_results"]),
        {"aggregate_csv_results": csv_summary(rows)},
    )


BATCH_CSV = batch_csv(1000)
BATCH_CSV_EMPTY = Expectation(
    "batch_csv_workflow",
    {"row_count": 0},
    frozenset(["analyze_csv", "process_csv_batch_001", "aggregate_csv_results"]),
    {
        "aggregate_csv_results": {
            "total_processed": 0,
            "inventory_value_cents": 0,
            "category_counts": {},
            "worker_count": 0,
            "scenario": "no_batches",
        }
    },
)


def _pipeline_metrics(days: int) -> dict[str, Any]:
    regions = ("north", "south", "east", "west")
    by_region = Counter({r: 0 for r in regions})
    for day in range(1, days + 1):
        for i in range(3):
            by_region[regions[(day + i) % 4]] += 100 + 10 * day + i
    units = [(i * 7) % 40 for i in range(1, 4 * days + 1)]
    top = max(by_region.items(), key=lambda kv: (kv[1], kv[0]))[0]
    return {
        "revenue": sum(by_region.values()),
        "total_units": sum(units),
        "low_stock_skus": sum(u < 5 for u in units),
        "customers": 5 * days,
        "top_region": top,
    }


PIPELINE_METRICS = _pipeline_metrics(7)
DATA_PIPELINE = Expectation(
    "data_pipeline",
    {"days": 7},
    frozenset(
        [
            "extract_sales",
            "extract_inventory",
            "extract_customers",
            "transform_sales",
            "transform_inventory",
            "transform_customers",
            "aggregate_metrics",
            "generate_insights",
        ]
    ),
    {"aggregate_metrics": PIPELINE_METRICS},
)

ORDER_ITEMS = [
    {"sku": "BOOK-1", "quantity": 2, "price_cents": 1250},
    {"sku": "MUG-7", "quantity": 1, "price_cents": 899},
]
ORDER = Expectation(
    "order_fulfillment",
    {"order_id": "A-1001", "items": ORDER_ITEMS, "customer_email": "ada@example.com"}
    | {"payment_failures": 2},
    frozenset(
        ["validate_order", "reserve_inventory", "charge_payment", "ship_order", "notify_customer"]
    ),
    {
        "validate_order": {"order_id": "A-1001", "total_cents": 3399, "lines": 2},
        "reserve_inventory": {"reservation_id": "RSV-A-1001", "units": 3},
        "charge_payment": {"charge_id": "CH-A-1001", "amount_cents": 3399, "attempt": 3},
        "ship_order": {"tracking_number": "TRK-A-1001", "units": 3},
        "notify_customer": {
            "notified": "ada@example.com",
            "message": "Your order shipped: TRK-A-1001",
        },
    },
    {"charge_payment": 3},
)

GALLERY = {
    "tree": TREE,
    "mixed_dag": MIXED_DAG,
    "approval_small": APPROVAL_SMALL,
    "approval_medium": APPROVAL_MEDIUM,
    "approval_large": APPROVAL_LARGE,
    "batch_csv": BATCH_CSV,
    "batch_csv_empty": BATCH_CSV_EMPTY,
    "data_pipeline": DATA_PIPELINE,
    "order_fulfillment": ORDER,
}


def check(expected: Expectation, status: str, steps: dict[str, Any]) -> None:
    """Assert a finished task against `expected`; `steps` maps names to step views."""
    states = {n: (s.current_state, getattr(s, "last_error", None)) for n, s in steps.items()}
    assert status == "complete", states
    assert set(steps) == expected.steps
    for name, result in expected.results.items():
        assert steps[name].results == result, name
    for name, step in steps.items():
        assert step.attempts == expected.attempts.get(name, 1), name
