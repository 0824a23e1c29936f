"""Worker scaling: throughput of 10 ms handlers with 1, 2 and 4 worker processes per broker.

Run: `python -m benchmarks.worker_scaling [--tasks 400] [--workers 1,2,4] [--brokers ...]`.

Each worker process runs one handler at a time (concurrency 1). Two modes per broker:
- `end-to-end`: orchestrator + workers; N single-step task requests sent at once, timed
  until every task is complete in PostgreSQL (what a user sees);
- `workers-only`: no orchestrator; N step messages put straight on the worker queue, timed
  until N results are on the results queue (the worker runtime alone).
Comparing the two shows whether the workers or the orchestrator limit the scaling. Each
run also reports idle worker RSS (VmRSS after start-up), CPU used by the orchestrator and
the workers, how busy the whole machine was, and (end-to-end) where a step's time went.

Every run gets a fresh database (and RabbitMQ vhost). Results: a Markdown table on stdout
and `benchmarks/results/worker_scaling.json`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.processes import cpu_seconds, rss_mb, unwind_on_sigterm
from benchmarks.scratch import scratch_config
from tasker.cli.cluster import LocalCluster, free_port
from tasker.config import Config
from tasker.ids import new_id
from tasker.messaging.backends import broker_from_config
from tasker.messaging.broker import Broker
from tasker.messaging.messages import (
    ORCHESTRATION_RESULTS_QUEUE,
    ORCHESTRATION_TASK_REQUESTS_QUEUE,
    ORCHESTRATION_WORKER_HEARTBEATS_QUEUE,
    HandlerSpec,
    StepMessage,
    TaskRequestMessage,
    WorkerHeartbeatMessage,
    decode,
    encode,
    worker_queue,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NAMESPACE = "bench"
HANDLERS = "benchmarks.handlers_sleep"


@dataclass
class Run:
    broker: str
    mode: str
    workers: int
    steps: int
    seconds: float
    steps_per_second: float
    idle_rss_mb: list[float]
    orchestrator_cpu_percent: float | None
    workers_cpu_percent: float
    machine_busy_percent: float
    stage_ms: dict[str, float] = field(default_factory=dict)


# Fresh services per run ------------------------------------------------------------------


def fresh_config(broker: str) -> AbstractContextManager[Config]:
    """A migrated, empty database (and vhost) with the benchmark template; dropped after."""
    return scratch_config(
        broker,
        HERE / "templates",
        poll_interval_seconds=0.5,
        log_level="WARNING",
        api_bind=f"127.0.0.1:{free_port()}",
    )


def start_cluster(config: Config, workers: int, orchestrators: int) -> LocalCluster:
    environment = {
        "PYTHONPATH": str(ROOT),
        "TASKER_CONCURRENCY": "1",
        "TASKER_WORKER_HEARTBEAT_SECONDS": "0.5",
    }
    cluster = LocalCluster(
        config,
        namespaces=NAMESPACE,
        handler_modules=HANDLERS,
        orchestrators=orchestrators,
        workers=workers,
        extra_env=environment,
    )
    return cluster.start()


def await_registered(database: psycopg.Connection[Any], pids: set[int]) -> None:
    """Wait until the orchestrator's registry lists every worker as running."""
    query = "SELECT pid FROM tasker.workers WHERE status = 'running'"
    wait_until(lambda: pids <= {row[0] for row in database.execute(query)}, 60, "workers")


def await_workers(broker: Broker, pids: set[int], timeout: float = 60.0) -> None:
    """Wait for a heartbeat from every worker (no orchestrator consumes them here)."""
    broker.ensure_queue(ORCHESTRATION_WORKER_HEARTBEATS_QUEUE)
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while seen < pids:
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers {sorted(pids - seen)} never sent a heartbeat")
        for delivery in broker.receive(ORCHESTRATION_WORKER_HEARTBEATS_QUEUE, max_messages=50):
            message = decode(delivery.body)
            if isinstance(message, WorkerHeartbeatMessage):
                seen.add(message.pid)
            broker.ack(delivery)
        time.sleep(0.05)


# Process and machine measurements --------------------------------------------------------


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass
class Meter:
    """CPU use of some processes and of the machine over a timed window."""

    orchestrators: list[int]
    workers: list[int]
    started: float = 0.0
    seconds: float = 0.0
    before: dict[int, float] = field(default_factory=dict)
    machine: tuple[int, int] = (0, 0)

    def __enter__(self) -> Meter:
        self.before = {pid: cpu_seconds(pid) for pid in self.orchestrators + self.workers}
        self.machine = machine_ticks()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.after = {pid: cpu_seconds(pid) for pid in self.before}
        busy, total = machine_ticks()
        self.busy_percent = 100 * (busy - self.machine[0]) / max(total - self.machine[1], 1)

    def cpu_percent(self, pids: list[int]) -> float:
        used = sum(self.after[pid] - self.before[pid] for pid in pids)
        return 100 * used / self.seconds


# The two modes ---------------------------------------------------------------------------


def wait_until(done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)


def end_to_end(config: Config, workers: int, tasks: int) -> Run:
    with ExitStack() as stack:
        cluster = start_cluster(config, workers, orchestrators=1)
        stack.callback(cluster.stop)
        broker = broker_from_config(config)
        stack.callback(broker.close)
        database = stack.enter_context(psycopg.connect(config.database_url, autocommit=True))
        worker_pids = [process.pid for process in cluster.workers]
        await_registered(database, set(worker_pids))
        idle = [rss_mb(pid) for pid in worker_pids]
        requests = [encode(_task_request()) for _ in range(tasks)]
        orchestrator_pids = [process.pid for process in cluster.orchestrators]
        with Meter(orchestrator_pids, worker_pids) as meter:
            broker.send_batch(ORCHESTRATION_TASK_REQUESTS_QUEUE, requests)
            wait_until(lambda: _completed_tasks(database) >= tasks, 300, "tasks to complete")
        stages = _stage_ms(database)
    return _run(config, "end-to-end", workers, tasks, meter, idle, stages)


def workers_only(config: Config, workers: int, steps: int) -> Run:
    with ExitStack() as stack:
        cluster = start_cluster(config, workers, orchestrators=0)
        stack.callback(cluster.stop)
        broker = broker_from_config(config)
        stack.callback(broker.close)
        worker_pids = [process.pid for process in cluster.workers]
        for queue in (worker_queue(NAMESPACE), ORCHESTRATION_RESULTS_QUEUE):
            broker.ensure_queue(queue)
        await_workers(broker, set(worker_pids))
        idle = [rss_mb(pid) for pid in worker_pids]
        messages = [encode(_step_message()) for _ in range(steps)]
        with Meter([], worker_pids) as meter:
            broker.send_batch(worker_queue(NAMESPACE), messages)
            wait_until(lambda: _results(broker) >= steps, 300, "results")
    return _run(config, "workers-only", workers, steps, meter, idle, {})


def _run(
    config: Config,
    mode: str,
    workers: int,
    steps: int,
    meter: Meter,
    idle: list[float],
    stages: dict[str, float],
) -> Run:
    return Run(
        broker=config.broker,
        mode=mode,
        workers=workers,
        steps=steps,
        seconds=round(meter.seconds, 2),
        steps_per_second=round(steps / meter.seconds, 1),
        idle_rss_mb=idle,
        orchestrator_cpu_percent=(
            round(meter.cpu_percent(meter.orchestrators)) if meter.orchestrators else None
        ),
        workers_cpu_percent=round(meter.cpu_percent(meter.workers)),
        machine_busy_percent=round(meter.busy_percent),
        stage_ms=stages,
    )


def _task_request() -> TaskRequestMessage:
    return TaskRequestMessage(
        task_uuid=new_id(), namespace=NAMESPACE, name="sleep_10ms", version="1.0.0"
    )


def _step_message() -> StepMessage:
    return StepMessage(
        task_uuid=new_id(),
        step_uuid=new_id(),
        namespace=NAMESPACE,
        task_name="sleep_10ms",
        task_version="1.0.0",
        step_name="sleep",
        handler=HandlerSpec("bench.sleep_10ms"),
        attempt=1,
        max_attempts=1,
        retryable=False,
        input_data={},
    )


def _completed_tasks(database: psycopg.Connection[Any]) -> int:
    row = database.execute("SELECT count(*) FROM tasker.tasks WHERE status = 'complete'")
    return int(row.fetchone()[0])  # type: ignore[index]


def _results(broker: Broker) -> int:
    stats = broker.queue_stats(ORCHESTRATION_RESULTS_QUEUE)
    return stats.ready + stats.in_flight


# Where a step's time goes: request -> enqueued -> started -> finished -> applied -> done.
_STAGES_SQL = """
WITH s AS (
  SELECT tr.step_uuid, tr.task_uuid,
         max(tr.created_at) FILTER (WHERE to_state = 'enqueued') AS enqueued,
         max(tr.created_at) FILTER (WHERE to_state = 'in_progress') AS started,
         max(tr.created_at) FILTER (WHERE to_state = 'enqueued_for_orchestration') AS finished,
         max(tr.created_at) FILTER (WHERE to_state = 'complete') AS applied
    FROM tasker.workflow_step_transitions tr GROUP BY tr.step_uuid, tr.task_uuid)
SELECT 1000 * avg(extract(epoch FROM s.enqueued - t.created_at)),
       1000 * avg(extract(epoch FROM s.started - s.enqueued)),
       1000 * avg(extract(epoch FROM s.finished - s.started)),
       1000 * avg(extract(epoch FROM s.applied - s.finished)),
       1000 * avg(extract(epoch FROM t.completed_at - s.applied))
  FROM s JOIN tasker.tasks t USING (task_uuid)
"""
_STAGE_NAMES = ("created->enqueued", "queued", "handler", "result->applied", "applied->done")


def _stage_ms(database: psycopg.Connection[Any]) -> dict[str, float]:
    row = database.execute(_STAGES_SQL).fetchone()
    assert row is not None
    return {name: round(float(value), 1) for name, value in zip(_STAGE_NAMES, row, strict=True)}


# Report ----------------------------------------------------------------------------------


def markdown(runs: list[Run]) -> str:
    header = (
        "| broker | mode | workers | steps | seconds | steps/s | speed-up | idle RSS MB "
        "| orch CPU % | workers CPU % | machine busy % |"
    )
    lines = [header, "|" + "---|" * 11]
    for run in runs:
        same = [r for r in runs if (r.broker, r.mode) == (run.broker, run.mode)]
        base = min(same, key=lambda r: r.workers)
        orchestrator = "-" if run.orchestrator_cpu_percent is None else run.orchestrator_cpu_percent
        lines.append(
            f"| {run.broker} | {run.mode} | {run.workers} | {run.steps} | {run.seconds} "
            f"| {run.steps_per_second} | {run.steps_per_second / base.steps_per_second:.2f}x "
            f"| {max(run.idle_rss_mb)} | {orchestrator} | {run.workers_cpu_percent} "
            f"| {run.machine_busy_percent} |"
        )
    stages = [f"- {r.broker} x{r.workers}: {r.stage_ms}" for r in runs if r.stage_ms]
    return "\n".join([*lines, "", "Mean time per stage (ms), end-to-end runs:", *stages])


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--brokers", default="pgmq,rabbitmq")
    parser.add_argument("--modes", default="end-to-end,workers-only")
    args = parser.parse_args()
    modes = {"end-to-end": end_to_end, "workers-only": workers_only}
    runs = []
    for broker in args.brokers.split(","):
        for mode in args.modes.split(","):
            for workers in map(int, args.workers.split(",")):
                try:
                    with fresh_config(broker) as config:
                        runs.append(modes[mode](config, workers, args.tasks))
                except Exception as exc:  # one failed run (e.g. a broker outage) ends no others
                    print(f"{broker} {mode} x{workers}: FAILED: {exc!r}")
                    continue
                print(f"{broker} {mode} x{workers}: {runs[-1].steps_per_second} steps/s")
    print(markdown(runs))
    output = HERE / "results" / "worker_scaling.json"
    output.parent.mkdir(exist_ok=True)
    output.write_text(json.dumps([asdict(run) for run in runs], indent=2) + "\n")


if __name__ == "__main__":
    main()
