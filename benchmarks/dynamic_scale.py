"""How creation, discovery and finalization cost grow with the number of steps.

Run: `python -m benchmarks.dynamic_scale [--sizes 100,1000,5000] [--admin-url URL]`.

In one fresh database, through the real state layer (no broker, no processes), for each
size N:
- static fan-out/fan-in (root -> N-2 leaves -> sink):
  - creation: `create_task` (plan, rows, one call);
  - discovery: completing the root (`apply_step_result` finds the N-2 ready leaves) plus
    claiming them all (`claim_for_dispatch`, one call);
  - completion: every leaf's result applied (mean per result; the last one makes the
    sink ready), then finalization: the sink's result and `finalize_task`;
- dynamic: a batchable step whose outcome asks for N-2 batches: the result applied with
  its follow-up, which creates the N-2 workers and the convergence step (one transaction).

Linear growth means the per-step column stays flat as N grows.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from benchmarks.processes import unwind_on_sigterm
from tasker.state.db import Database
from tasker.state.migrate import migrate
from tasker.state.repository import RegisteredTemplate, RetryDefaults, StateRepository
from tasker.state.templates import (
    BatchConfig,
    HandlerDefinition,
    StepDefinition,
    TaskTemplate,
)
from tests.integration.dynamic_harness import Engine

H = HandlerDefinition("bench.noop")


def fan_template(size: int) -> TaskTemplate:
    leaves = tuple(f"leaf_{i:05d}" for i in range(size - 2))
    steps = (
        StepDefinition("root", H),
        *(StepDefinition(leaf, H, dependencies=("root",)) for leaf in leaves),
        StepDefinition("sink", H, dependencies=leaves),
    )
    return TaskTemplate(f"fan_{size}", "bench", "1.0.0", steps)


def batch_template() -> TaskTemplate:
    config = BatchConfig(parallelism=10_000, worker_template="work")
    steps = (
        StepDefinition("analyze", H, type="batchable", batch_config=config),
        StepDefinition(
            "work", H, dependencies=("analyze",), type="batch_worker", batch_config=config
        ),
        StepDefinition("total", H, dependencies=("work",), type="deferred_convergence"),
    )
    return TaskTemplate("batch", "bench", "1.0.0", steps)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, (time.perf_counter() - started) * 1000


def measure_fan(engine: Engine, registered: RegisteredTemplate) -> dict[str, float]:
    task, create_ms = timed(lambda: engine.create(registered))
    root = engine.claim()["root"]
    _, complete_root_ms = timed(lambda: engine.report(root, {"ok": 1}))
    leaves, claim_ms = timed(engine.claim)
    started = time.perf_counter()
    for entry in leaves.values():
        engine.report(entry, {"ok": 1})
    per_leaf_ms = (time.perf_counter() - started) * 1000 / len(leaves)
    sink = engine.claim()["sink"]
    _, finalize_ms = timed(lambda: engine.report(sink, {"ok": 1}))
    assert engine.status(task) == "complete"
    return {
        "create": create_ms,
        "discover": complete_root_ms + claim_ms,
        "per_result": per_leaf_ms,
        "finalize": finalize_ms,
    }


def measure_batch(engine: Engine, registered: RegisteredTemplate, workers: int) -> float:
    engine.create(registered)
    analyze = engine.claim()["analyze"]
    configs = [{"start_cursor": i, "end_cursor": i + 1} for i in range(workers)]
    outcome = {"type": "create_batches", "worker_template_name": "work"}
    result = {"batch_processing_outcome": {**outcome, "cursor_configs": configs}}
    report, elapsed = timed(lambda: engine.report(analyze, result))
    assert len(report.ready_steps) == workers
    return elapsed


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    name = f"tasker_bench_{uuid.uuid4().hex[:8]}"
    base = admin_url.rsplit("/", 1)[0]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with fresh_database(args.admin_url) as url:
        migrate(url)
        database = Database(url, max_size=2)
        engine = Engine(StateRepository(database, RetryDefaults(jitter=0.0)))
        batch = engine.register_template(batch_template())
        print(
            "| steps | create ms | discover ms | per result ms | finalize ms "
            "| batch create ms | create µs/step | batch µs/step |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for size in sizes:
            fan = measure_fan(engine, engine.register_template(fan_template(size)))
            batch_ms = measure_batch(engine, batch, size - 2)
            print(
                f"| {size} | {fan['create']:.1f} | {fan['discover']:.1f} | "
                f"{fan['per_result']:.2f} | {fan['finalize']:.1f} | {batch_ms:.1f} | "
                f"{fan['create'] * 1000 / size:.0f} | {batch_ms * 1000 / size:.0f} |"
            )
        database.close()


if __name__ == "__main__":
    main()
