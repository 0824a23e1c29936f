"""The engine benchmark: real processes, event-driven completion, floors in the same run.

    python -m benchmarks.e2e --broker both

For each broker: the floors (a one-hop broker latency, messages/s, a bare step
transaction), task creation latency (API call to response), end-to-end latency of four
workflow shapes over sequential runs, sustained throughput (a burst, and steady paced
loads) with the CPU time each process spends per task, and memory. With `--repeat
N` each broker runs N times on fresh databases and every figure is the median of the N.
Completion is detected by LISTEN on the engine's `tasker_task_finished` notices, never
by sleeping. Results go to benchmarks/results/e2e.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from benchmarks import floors
from benchmarks.processes import CpuMeter, pids_named, rss_mb, unwind_on_sigterm
from benchmarks.scratch import scratch_config
from benchmarks.stats import markdown_table, median_figures, percentiles
from tasker.cli.cluster import LocalCluster
from tasker.config import Config

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "e2e.json"
TEMPLATES = ROOT / "benchmarks" / "e2e_templates"
SHAPES = {"linear": ("bench_linear", 4), "diamond": ("bench_diamond", 3),
          "mixed": ("bench_mixed", 4), "tree": ("bench_tree", 4)}  # fmt: skip
_API, _MEMORY_API = "127.0.0.1:18080", "127.0.0.1:18081"
SUSTAINED_P99_MS = 500  # the bound on latency under a sustained load
LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL", "ERROR")  # WARNING shows the processes' logs
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class Bench:
    def __init__(self, config: Config, workers: int, concurrency: int) -> None:
        self.config = config
        self.cluster = LocalCluster(
            config, namespaces="bench", handler_modules="benchmarks.handlers_noop",
            workers=workers, log_level=LOG_LEVEL,
            extra_env={"TASKER_CONCURRENCY": str(concurrency)},
        )  # fmt: skip
        self.http = httpx.Client(timeout=30)
        self.listener = psycopg.connect(config.database_url, autocommit=True)
        self.listener.execute("LISTEN tasker_task_finished")

    def create(self, template: str) -> tuple[str, float]:
        started = time.perf_counter()
        response = self.http.post(
            f"{self.cluster.api_url}/v1/tasks",
            json=_task_body(template),
        )
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        return str(response.json()["task_uuid"]), elapsed

    def wait_finished(self, task_ids: set[str], timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        pending = set(task_ids)
        while pending and time.monotonic() < deadline:
            for notice in self.listener.notifies(timeout=1.0, stop_after=len(pending)):
                pending.discard(notice.payload.split(":")[0])
        if pending:
            raise TimeoutError(f"{len(pending)} task(s) did not finish")

    def latency(
        self, template: str, runs: int, warmup: int = 20
    ) -> tuple[dict[str, float], dict[str, float]]:
        creation, end_to_end = [], []
        for index in range(warmup + runs):
            started = time.perf_counter()
            task_uuid, created_ms = self.create(template)
            self.wait_finished({task_uuid})
            if index >= warmup:
                creation.append(created_ms)
                end_to_end.append((time.perf_counter() - started) * 1000)
        return percentiles(creation), percentiles(end_to_end)

    def throughput(
        self, template: str, tasks: int, steps_per_task: int, submitters: int
    ) -> dict[str, Any]:
        started = time.perf_counter()
        with self.cpu_meter() as cpu:
            task_ids = set(submit_all(self.cluster.api_url, template, tasks, submitters))
            self.wait_finished(task_ids)
        seconds = time.perf_counter() - started
        latency = self._task_latencies(task_ids)
        return {"tasks_per_s": round(tasks / seconds, 1),
                "steps_per_s": round(tasks * steps_per_task / seconds, 1),
                "p50_ms": latency["p50"], "p99_ms": latency["p99"], "tasks": tasks,
                "cpu_ms_per_task": cpu.ms_per(tasks)}  # fmt: skip

    def paced(
        self, template: str, rate: float, seconds: float, steps: int, submitters: int
    ) -> dict[str, Any]:
        """Submit `rate` tasks/s for `seconds` (an open-loop, steady load spread over
        `submitters` clients, so no one client's call latency caps the rate), then report
        the rate achieved and each task's latency, creation to completion, as the database
        recorded it."""
        total = int(rate * seconds)
        started = time.perf_counter()

        def submit_share(first: int) -> tuple[list[str], float]:
            created = []
            with httpx.Client(timeout=60) as http:
                for index in range(first, total, submitters):
                    delay = started + index / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    created.append(_post_task(http, self.cluster.api_url, template))
            return created, time.perf_counter()

        with self.cpu_meter() as cpu:
            with ThreadPoolExecutor(submitters) as pool:
                shares = list(pool.map(submit_share, range(submitters)))
            task_ids = {task for created, _ in shares for task in created}
            self.wait_finished(task_ids)
        achieved = len(task_ids) / (max(ended for _, ended in shares) - started)
        latency = self._task_latencies(task_ids)
        return {"tasks_per_s": round(achieved, 1), "steps_per_s": round(achieved * steps, 1),
                "target_steps_per_s": rate * steps, "p50_ms": latency["p50"],
                "p99_ms": latency["p99"], "tasks": len(task_ids),
                "cpu_ms_per_task": cpu.ms_per(len(task_ids))}  # fmt: skip

    def cpu_meter(self) -> CpuMeter:
        """CPU time of every process a task's work runs in: PostgreSQL's (all of the
        server's), RabbitMQ's (idle on PGMQ), the cluster's, and this benchmark's clients."""
        return CpuMeter({
            "postgresql": lambda: pids_named("postgres"),
            "rabbitmq": lambda: pids_named("beam.smp"),
            "orchestrator": lambda: [process.pid for process in self.cluster.orchestrators],
            "worker": lambda: [process.pid for process in self.cluster.workers],
            "clients": lambda: [os.getpid()],
        })  # fmt: skip

    def _task_latencies(self, task_ids: set[str]) -> dict[str, float]:
        with psycopg.connect(self.config.database_url) as connection:
            rows = connection.execute(
                "SELECT extract(epoch FROM completed_at - created_at) * 1000 FROM tasker.tasks "
                "WHERE task_uuid = ANY(%s::uuid[])", (list(task_ids),),
            ).fetchall()  # fmt: skip
        return percentiles([float(row[0]) for row in rows])

    def close(self) -> None:
        self.http.close()
        self.listener.close()


def submit_all(api_url: str, template: str, tasks: int, submitters: int) -> list[str]:
    """Create `tasks` tasks through the API from `submitters` concurrent clients."""

    def submit_share(share: int) -> list[str]:
        with httpx.Client(timeout=60) as http:
            return [_post_task(http, api_url, template) for _ in range(share)]

    shares = [tasks // submitters + (i < tasks % submitters) for i in range(submitters)]
    with ThreadPoolExecutor(submitters) as pool:
        return [task for batch in pool.map(submit_share, shares) for task in batch]


def _task_body(template: str) -> dict[str, Any]:
    return {"namespace": "bench", "name": template, "version": "1.0.0", "context": {}}


def _post_task(http: httpx.Client, api_url: str, template: str) -> str:
    """Create one task through the API; its uuid."""
    response = http.post(f"{api_url}/v1/tasks", json=_task_body(template))
    response.raise_for_status()
    return str(response.json()["task_uuid"])


def memory(config: Config, in_flight: int, submitters: int) -> dict[str, float]:
    """Orchestrator RSS with `in_flight` tasks waiting (no workers), and an idle worker."""
    cluster = LocalCluster(config, namespaces="bench", handler_modules="benchmarks.handlers_noop",
                           workers=0, log_level=LOG_LEVEL)  # fmt: skip
    with cluster:
        submit_all(cluster.api_url, "bench_linear", in_flight, submitters)
        time.sleep(3)
        orchestrator = rss_mb(cluster.orchestrators[0].pid)
        worker = cluster.start_worker()
        time.sleep(4)
        idle_worker = rss_mb(worker.pid)
        return {"orchestrator_rss_mb": orchestrator, "in_flight_tasks": in_flight,
                "worker_rss_mb_at_start": idle_worker}  # fmt: skip


def run_broker(broker: str, args: argparse.Namespace) -> dict[str, Any]:
    """The engine figures of `args.repeat` runs (each on a fresh database) and their medians."""
    runs = []
    settings: dict[str, Any] = {"poll_interval_seconds": 1.0, "api_bind": _API}
    for _ in range(args.repeat):
        with scratch_config(broker, TEMPLATES, **settings) as config:
            runs.append(engine_figures(config, args))
    result: dict[str, Any] = median_figures(runs)
    result["linear_p50_by_run"] = [run["e2e_linear_ms"]["p50"] for run in runs]
    memory_settings: dict[str, Any] = {"api_bind": _MEMORY_API, "backpressure_queue_depth": 10**9}
    with scratch_config(broker, TEMPLATES, **memory_settings) as config:
        result["memory"] = memory(config, args.in_flight, args.submitters)
    return result


def engine_figures(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    """Floors, latency of each shape, creation and sustained throughput on one cluster."""
    result: dict[str, Any] = {
        "floor_hop_ms": floors.hop_latency(config),
        "floor_messages_per_s": floors.message_rate(config),
        "floor_step_transaction_ms": floors.step_transaction(config.database_url),
    }
    bench = Bench(config, workers=args.workers, concurrency=args.concurrency)
    with bench.cluster:
        for shape, (template, _) in SHAPES.items():
            creation, latency = bench.latency(template, args.runs)
            result[f"e2e_{shape}_ms"] = latency
            result.setdefault("creation_ms", creation)
        result["throughput"] = bench.throughput(
            "bench_linear", args.throughput_tasks, 4, args.submitters
        )
        result["paced"] = [
            bench.paced("bench_linear", rate, args.paced_seconds, 4, args.submitters)
            for rate in args.paced_rates
        ]
    bench.close()
    return result


def _paced_rows(broker: str, paced: list[dict[str, Any]]) -> list[list[object]]:
    rows: list[list[object]] = [
        [broker, f"paced {p['target_steps_per_s']:.0f} steps/s (achieved {p['steps_per_s']:.0f}):"
         " task p50 / p99 (ms)", f"{p['p50_ms']} / {p['p99_ms']}", _cpu_cell(p)] for p in paced
    ]  # fmt: skip
    kept_up = [p["steps_per_s"] for p in paced if p["p99_ms"] <= SUSTAINED_P99_MS]
    if kept_up:
        rows.append([broker, f"highest paced steps/s with p99 <= {SUSTAINED_P99_MS} ms",
                     max(kept_up), ""])  # fmt: skip
    return rows


def _cpu_cell(figures: dict[str, Any]) -> str:
    """CPU ms per task by process, busiest first."""
    spent = sorted(figures.get("cpu_ms_per_task", {}).items(), key=lambda item: -item[1])
    return ("CPU ms/task: " + ", ".join(f"{name} {ms}" for name, ms in spent)) if spent else ""


def machine() -> dict[str, str]:
    def version(command: list[str]) -> str:
        try:
            return subprocess.run(
                command, capture_output=True, text=True, timeout=60
            ).stdout.strip()
        except OSError:
            return "unknown"

    with psycopg.connect(ADMIN_URL) as connection:
        postgres = str(connection.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    return {"cores": str(os.cpu_count()), "python": platform.python_version(),
            "postgresql": postgres, "rabbitmq": version(["rabbitmqctl", "-q", "version"]),
            "kernel": platform.release()}  # fmt: skip


def summary(results: dict[str, Any]) -> str:
    rows: list[list[object]] = []
    for broker, r in results["brokers"].items():
        rows += _broker_rows(broker, r)
    return markdown_table(["broker", "metric", "value", "vs floor"], rows)


def _broker_rows(broker: str, r: dict[str, Any]) -> list[list[object]]:
    hop, txn = r["floor_hop_ms"]["p50"], r["floor_step_transaction_ms"]["p50"]
    naive = 4 * (2 * hop + txn)  # a 4-step chain built from 2 hops + 1 transaction per step
    linear, creation, load = r["e2e_linear_ms"], r["creation_ms"], r["throughput"]
    shapes = " / ".join(str(r[f"e2e_{shape}_ms"]["p50"]) for shape in ("diamond", "mixed", "tree"))
    rate_ratio = load["steps_per_s"] * 2 / r["floor_messages_per_s"]
    by_run = " / ".join(str(p50) for p50 in r.get("linear_p50_by_run", []))
    return [
        [broker, "4-step linear e2e p50 / p99 (ms)", f"{linear['p50']} / {linear['p99']}",
         f"{linear['p50'] / naive:.2f}x naive floor {naive:.1f} ms"],
        [broker, "linear p50 of each run (ms)", by_run, ""],
        [broker, "diamond / mixed / tree e2e p50 (ms)", shapes, ""],
        [broker, "task creation p50 / p99 (ms)", f"{creation['p50']} / {creation['p99']}",
         f"{creation['p50'] / txn:.1f}x step txn"],
        *_paced_rows(broker, r.get("paced", [])),
        [broker, "sustained steps/s (p99 ms)", f"{load['steps_per_s']} ({load['p99_ms']})",
         f"{rate_ratio:.2f}x broker msgs/s; {_cpu_cell(load)}"],
        [broker, "orchestrator RSS MB (tasks in flight)",
         f"{r['memory']['orchestrator_rss_mb']} ({r['memory']['in_flight_tasks']})", ""],
        [broker, "floors: hop p50, msgs/s, step txn p50",
         f"{hop} ms, {r['floor_messages_per_s']}/s, {txn} ms", ""],
    ]  # fmt: skip


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", choices=("pgmq", "rabbitmq", "both"), default="both")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--throughput-tasks", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--submitters", type=int, default=8, help="concurrent API clients")
    parser.add_argument(
        "--paced-rates",
        type=float,
        nargs="*",
        default=[10.0, 25.0, 40.0],
        help="steady loads to measure latency under (tasks/s)",
    )
    parser.add_argument("--paced-seconds", type=float, default=20.0)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per broker; figures are their medians"
    )
    args = parser.parse_args()
    brokers = ["pgmq", "rabbitmq"] if args.broker == "both" else [args.broker]
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                               "machine": machine(), "brokers": {}}  # fmt: skip
    for broker in brokers:
        results["brokers"][broker] = run_broker(broker, args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(summary(results))
    print(f"\nmachine: {results['machine']}  ({results['date']})")


if __name__ == "__main__":
    main()
