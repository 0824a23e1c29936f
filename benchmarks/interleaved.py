"""A/B two checkouts of the engine on one machine, robust to the machine's drift.

    python -m benchmarks.interleaved ../before . --broker pgmq --runs 300

This VM's speed drifts by tens of percent within minutes, so runs of A and then of B
compare the minutes more than the code. Here both clusters (orchestrator + worker, each on
its own scratch database and vhost, each running its own checkout) are up at once, idle
but for the one task in flight, and tasks alternate between them: A, B, A, B... Every
figure is taken from the same minutes for both. Reports end-to-end latency as the client
sees it (API call to the finished notice), creation latency, and the task's latency as
the database recorded it (created to completed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg

from benchmarks.e2e import TEMPLATES, Bench
from benchmarks.processes import unwind_on_sigterm
from benchmarks.scratch import Prepare, scratch_config
from benchmarks.stats import markdown_table, percentiles
from tasker.cli.cluster import LocalCluster, config_environment
from tasker.config import Config

_SERVER_SIDE = """
SELECT extract(epoch FROM completed_at - created_at) * 1000 FROM tasker.tasks
 WHERE completed_at IS NOT NULL AND created_at >= to_timestamp(%s)
"""


def checkout_environment(checkout: Path) -> dict[str, str]:
    """Makes a process import the engine from `checkout` (PYTHONSAFEPATH keeps the working
    directory, wherever it is, out of its import path)."""
    return {"PYTHONPATH": str(checkout.resolve()), "PYTHONSAFEPATH": "1"}


def checkout_bench(config: Config, checkout: Path, log_level: str) -> Bench:
    """A Bench whose processes import the engine from `checkout`."""
    bench = Bench(config, workers=1, concurrency=8)
    bench.cluster = LocalCluster(
        bench.config, namespaces="bench", handler_modules="benchmarks.handlers_noop",
        workers=1, log_level=log_level,
        extra_env={"TASKER_CONCURRENCY": "8", **checkout_environment(checkout)},
    )  # fmt: skip
    return bench


def preparer(checkout: Path) -> Prepare:
    """Migrates a scratch database with `checkout`'s own CLI, so each side of the A/B runs
    on its own migrations, not on those of the engine this process imports."""

    def prepare(config: Config, templates: Path) -> None:
        environment = {**os.environ, **config_environment(config), **checkout_environment(checkout)}
        for command in (["db", "migrate"], ["template", "register", str(templates)]):
            subprocess.run([sys.executable, "-m", "tasker", "--log-level", "ERROR", *command],
                           env=environment, check=True, timeout=300)  # fmt: skip

    return prepare


def run(checkouts: list[Path], broker: str, template: str, runs: int, warmup: int) -> None:
    with ExitStack() as stack:
        benches = []
        for index, checkout in enumerate(checkouts):
            api = f"127.0.0.1:{18180 + index}"
            config = stack.enter_context(
                scratch_config(broker, TEMPLATES, prepare=preparer(checkout), api_bind=api)
            )
            bench = checkout_bench(config, checkout, "ERROR")
            stack.enter_context(bench.cluster)
            stack.callback(bench.close)
            bench.cluster.wait_for_api()
            benches.append(bench)
        for bench in benches:
            bench.latency(template, 0, warmup=warmup)
        measured_from = time.time()
        end_to_end: list[list[float]] = [[] for _ in benches]
        creation: list[list[float]] = [[] for _ in benches]
        for _ in range(runs):
            for index, bench in enumerate(benches):
                started = time.perf_counter()
                task, created_ms = bench.create(template)
                bench.wait_finished({task})
                end_to_end[index].append((time.perf_counter() - started) * 1000)
                creation[index].append(created_ms)
        rows = []
        for index, (checkout, bench) in enumerate(zip(checkouts, benches, strict=True)):
            with psycopg.connect(bench.config.database_url) as connection:
                recorded_rows = connection.execute(_SERVER_SIDE, (measured_from,)).fetchall()
                server = [float(row[0]) for row in recorded_rows]
            e2e, made, recorded = (
                percentiles(end_to_end[index]),
                percentiles(creation[index]),
                percentiles(server),
            )
            rows.append([str(checkout), f"{e2e['p50']} / {e2e['p90']} / {e2e['p99']}",
                         made["p50"], f"{recorded['p50']} / {recorded['p99']}"])  # fmt: skip
    header = ["checkout", "e2e p50 / p90 / p99 (ms)", "creation p50", "recorded p50 / p99"]
    print(f"{broker}, {template}, {runs} runs each, interleaved")
    print(markdown_table(header, rows))


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="+", type=Path, help="project roots to compare")
    parser.add_argument("--broker", choices=["pgmq", "rabbitmq"], default="pgmq")
    parser.add_argument("--shape", default="bench_linear")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()
    run(args.checkouts, args.broker, args.shape, args.runs, args.warmup)


if __name__ == "__main__":
    main()
