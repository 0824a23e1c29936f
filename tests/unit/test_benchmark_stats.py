"""The benchmarks' arithmetic: repeated runs are reported as medians, figure by figure."""

from __future__ import annotations

from benchmarks.stats import median_figures, percentiles


def test_repeated_runs_combine_into_the_median_of_each_figure() -> None:
    runs = [
        {"e2e": {"p50": 40.0, "p99": 90.0}, "paced": [{"p50": 1.0}], "date": "a", "ok": True},
        {"e2e": {"p50": 50.0, "p99": 60.0}, "paced": [{"p50": 3.0}], "date": "b", "ok": False},
        {"e2e": {"p50": 45.0, "p99": 70.0}, "paced": [{"p50": 2.0}], "date": "c", "ok": True},
    ]

    combined = median_figures(runs)

    assert combined == {
        "e2e": {"p50": 45.0, "p99": 70.0},
        "paced": [{"p50": 2.0}],
        "date": "a",  # not a number: the first run's
        "ok": True,
    }


def test_percentiles_of_samples() -> None:
    figures = percentiles([float(n) for n in range(1, 101)])

    assert (figures["p50"], figures["p90"], figures["p99"], figures["max"]) == (50.5, 91, 100, 100)
