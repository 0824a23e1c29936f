"""Percentiles and the Markdown table every benchmark prints."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 and max of latency samples (milliseconds), rounded for reading."""
    ordered = sorted(samples_ms)
    if not ordered:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "n": 0}

    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2)

    return {
        "p50": round(statistics.median(ordered), 2),
        "p90": at(0.90),
        "p99": at(0.99),
        "max": round(ordered[-1], 2),
        "n": len(ordered),
    }


def median_of(values: Sequence[float]) -> float:
    return round(statistics.median(values), 2) if values else 0.0


def median_figures(runs: Sequence[Any]) -> Any:
    """The runs' figures combined: each number the median of its values across the runs
    (dicts by key, lists by position), the way noisy machines' results are reported."""
    first = runs[0]
    if isinstance(first, dict):
        return {key: median_figures([run[key] for run in runs]) for key in first}
    if isinstance(first, list):
        return [median_figures(items) for items in zip(*runs, strict=True)]
    if isinstance(first, int | float) and not isinstance(first, bool):
        return median_of([float(value) for value in runs])
    return first


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
