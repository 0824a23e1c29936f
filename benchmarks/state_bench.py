"""State layer: latency of the hot-path SQL with a large database behind it.

Run: `python -m benchmarks.state_bench [--tasks 100000] [--samples 2000]`.

On a fresh database, N tasks of a 4-step linear template are loaded. Two prototypes are
made through the real repository: one task just created (`create_task`), one run to the
end (`claim_steps` / `apply_step_result` / `finalize_task` for each step, then
`finalize_task`). The load clones them set-wise with fresh UUIDv7 ids: every row each
function wrote (task with its trigger-kept step counters, steps, edges, both transition
histories) is copied as is, so the tables hold exactly what the functions produce, a
`--complete-fraction` (default 0.9) of finished tasks and the rest waiting for their first
step: about 4N steps and 10+ transition rows per task. Then, with
that database behind it, it measures (p50/p99 over `--samples`):

- step completion: `apply_step_result` on a just-claimed first step (claimed outside the
  timing): completes it, writes three transition rows, moves the task and returns the
  newly ready child; as one autocommit statement (one round trip) and through the
  repository's unit of work (BEGIN + call + COMMIT);
- task creation of the 4-step template: `create_task`, the same two ways;
- the floor: `SELECT 1` (one round trip) and BEGIN + SELECT 1 + COMMIT.

Results: a Markdown table on stdout and `benchmarks/results/state_bench.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from benchmarks.processes import cpu_seconds, unwind_on_sigterm
from tasker.ids import new_id
from tasker.state.db import Database, UnitOfWork
from tasker.state.migrate import migrate
from tasker.state.repository import RegisteredTemplate, StateRepository, TaskSpec
from tasker.state.templates import HandlerDefinition, StepDefinition, TaskTemplate

ADMIN_URL = os.environ.get(
    "TASKER_BENCH_POSTGRES_URL",
    os.environ.get("TASKER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)
RESULTS = Path(__file__).parent / "results" / "state_bench.json"
GOALS_MS = {"step_completion_p99": 2.0, "task_creation_p50": 3.0}
BATCH = 5000
CONTEXT = {"order_id": "A-1042", "amount": 42}
RESULT = {"rows": 17, "checksum": "9f2c"}
WARMUP = 200

# Clone a prototype task's rows for a batch of new ids (n-th task: tasks[n], steps
# steps[4(n-1) + position + 1]), through jsonb so any column the schema gains is copied too
# (in a LATERAL: `(f(x)).*` would call f once per column).
CLONE_TASKS = """
INSERT INTO tasker.tasks
SELECT r.*
  FROM unnest(%(tasks)s::uuid[]) WITH ORDINALITY AS m(task_uuid, n)
  JOIN tasker.tasks p ON p.task_uuid = %(prototype)s,
       LATERAL jsonb_populate_record(NULL::tasker.tasks, to_jsonb(p) || jsonb_build_object(
           'task_uuid', m.task_uuid,
           'created_at', p.created_at - make_interval(secs => %(age)s - m.n),
           'updated_at', p.updated_at - make_interval(secs => %(age)s - m.n),
           'completed_at', p.completed_at - make_interval(secs => %(age)s - m.n))) AS r
"""
CLONE_STEPS = """
INSERT INTO tasker.workflow_steps
SELECT r.*
  FROM unnest(%(tasks)s::uuid[]) WITH ORDINALITY AS m(task_uuid, n)
  JOIN tasker.workflow_steps s ON s.task_uuid = %(prototype)s,
       LATERAL jsonb_populate_record(NULL::tasker.workflow_steps, to_jsonb(s)
           || jsonb_build_object(
                'step_uuid', (%(steps)s::uuid[])[(m.n - 1) * %(width)s + s.position + 1],
                'task_uuid', m.task_uuid)) AS r
"""
CLONE_EDGES = """
INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid, task_uuid)
SELECT (%(steps)s::uuid[])[(m.n - 1) * %(width)s + f.position + 1],
       (%(steps)s::uuid[])[(m.n - 1) * %(width)s + t.position + 1], m.task_uuid
  FROM unnest(%(tasks)s::uuid[]) WITH ORDINALITY AS m(task_uuid, n),
       tasker.workflow_step_edges e
  JOIN tasker.workflow_steps f ON f.step_uuid = e.from_step_uuid
  JOIN tasker.workflow_steps t ON t.step_uuid = e.to_step_uuid
 WHERE e.task_uuid = %(prototype)s
"""
CLONE_TASK_TRANSITIONS = """
INSERT INTO tasker.task_transitions
       (task_uuid, from_state, to_state, metadata, sort_key, created_at)
SELECT m.task_uuid, x.from_state, x.to_state, x.metadata, x.sort_key,
       x.created_at - make_interval(secs => %(age)s - m.n)
  FROM unnest(%(tasks)s::uuid[]) WITH ORDINALITY AS m(task_uuid, n),
       tasker.task_transitions x
 WHERE x.task_uuid = %(prototype)s
 ORDER BY m.n, x.sort_key
"""
CLONE_STEP_TRANSITIONS = """
INSERT INTO tasker.workflow_step_transitions
       (step_uuid, task_uuid, from_state, to_state, metadata, sort_key, created_at)
SELECT (%(steps)s::uuid[])[(m.n - 1) * %(width)s + s.position + 1], m.task_uuid,
       x.from_state, x.to_state, x.metadata, x.sort_key,
       x.created_at - make_interval(secs => %(age)s - m.n)
  FROM unnest(%(tasks)s::uuid[]) WITH ORDINALITY AS m(task_uuid, n),
       tasker.workflow_step_transitions x
  JOIN tasker.workflow_steps s ON s.step_uuid = x.step_uuid
 WHERE x.task_uuid = %(prototype)s
 ORDER BY m.n, s.position, x.sort_key
"""
CLONES = [CLONE_TASKS, CLONE_STEPS, CLONE_EDGES, CLONE_TASK_TRANSITIONS, CLONE_STEP_TRANSITIONS]


def linear_template() -> TaskTemplate:
    names = ["fetch", "transform", "enrich", "store"]
    steps = tuple(
        StepDefinition(
            name=name,
            handler=HandlerDefinition(callable=f"bench.{name}"),
            dependencies=(names[i - 1],) if i else (),
        )
        for i, name in enumerate(names)
    )
    return TaskTemplate(name="linear4", namespace_name="bench", version="1.0.0", steps=steps)


# Loading --------------------------------------------------------------------------------


def prototypes(repository: StateRepository, registered: RegisteredTemplate) -> tuple[UUID, UUID]:
    """(a task just created, a task run to completion), both through the repository."""
    database = repository.database
    fresh, done = new_id(), new_id()
    for task in (fresh, done):
        with database.transaction() as unit:
            repository.create_task(unit, registered, TaskSpec(task_uuid=task, context=CONTEXT))
    with database.transaction() as unit:
        ready = list(
            unit.execute_sql(
                "SELECT step_uuid FROM tasker.workflow_steps WHERE task_uuid = %s AND position = 0",
                (done,),
            )[0]
        )
    now = datetime.now(UTC)
    while ready:
        with database.transaction() as unit:
            claimed = repository.claim_steps(unit, ready)
        ready = []
        for step in claimed:
            with database.transaction() as unit:
                outcome = repository.apply_step_result(
                    unit,
                    step_uuid=step.step_uuid,
                    fence=step.fence,
                    success=True,
                    result=RESULT,
                    error=None,
                    started_at=now,
                    finished_at=now,
                    worker_id="bench",
                )
            ready.extend(outcome.ready_steps)
    with database.transaction() as unit:
        assert repository.finalize_task(unit, done).status == "complete"
    return fresh, done


def bulk_load(
    connection: psycopg.Connection[Any],
    repository: StateRepository,
    registered: RegisteredTemplate,
    tasks: int,
    complete_fraction: float,
) -> tuple[list[UUID], float]:
    """Load `tasks` clones of the prototypes; return the pending ones (oldest first)."""
    started = time.perf_counter()
    fresh, done = prototypes(repository, registered)
    width = len(registered.template.steps)
    to_complete = int(tasks * complete_fraction)
    pending: list[UUID] = []
    loaded = 0
    while loaded < tasks:
        size = min(BATCH, tasks - loaded)
        ids = [new_id() for _ in range(size)]
        finished = max(0, min(size, to_complete - loaded))
        with connection.transaction():
            for prototype, batch in ((done, ids[:finished]), (fresh, ids[finished:])):
                if not batch:
                    continue
                params = {
                    "prototype": prototype,
                    "tasks": batch,
                    "steps": [new_id() for _ in range(width * len(batch))],
                    "width": width,
                    "age": tasks - loaded,  # older batches first, a second apart per task
                }
                for clone in CLONES:
                    connection.execute(clone, params)
        pending.extend(ids[finished:])
        loaded += size
        if loaded % 20_000 == 0 or loaded == tasks:
            rate = loaded / (time.perf_counter() - started)
            print(f"  loaded {loaded:>7} tasks ({rate:,.0f}/s)", flush=True)
    return pending, time.perf_counter() - started


# Measuring ------------------------------------------------------------------------------


def server_cpu_seconds(backends: list[int]) -> float:
    """CPU time used so far by these (local) server processes."""
    return sum(cpu_seconds(pid) for pid in backends)


def timed(
    samples: int, action: Callable[[int], None], backends: list[int], *, first: int = 0
) -> dict[str, float]:
    """Latencies of `action(first + i)`, with the CPU time the server and this client spent
    on it: on a busy machine latency includes waiting for a core, CPU time does not."""
    latencies = []
    server_before, client_before = server_cpu_seconds(backends), time.process_time()
    for i in range(samples):
        start = time.perf_counter_ns()
        action(first + i)
        latencies.append(time.perf_counter_ns() - start)
    server = server_cpu_seconds(backends) - server_before
    client = time.process_time() - client_before
    ms = sorted(s / 1e6 for s in latencies)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, round(p * (len(ms) - 1)))]

    return {
        "n": len(ms),
        "p50_ms": round(pct(0.50), 4),
        "p90_ms": round(pct(0.90), 4),
        "p99_ms": round(pct(0.99), 4),
        "max_ms": round(ms[-1], 4),
        "mean_ms": round(statistics.fmean(ms), 4),
        "server_cpu_ms_per_op": round(1000 * server / samples, 4),
        "client_cpu_ms_per_op": round(1000 * client / samples, 4),
    }


def measure(
    url: str,
    repository: StateRepository,
    registered: RegisteredTemplate,
    pending: list[UUID],
    samples: int,
) -> dict[str, dict[str, float]]:
    """Each operation through the repository, two ways: as one autocommit statement (a
    unit of work on an autocommit connection: one round trip) and in its own transaction
    (BEGIN + statement + COMMIT, what the pipeline does)."""
    database = repository.database
    results: dict[str, dict[str, float]] = {}
    with psycopg.connect(url, autocommit=True) as connection:
        bare = UnitOfWork(connection)  # no BEGIN: each statement commits by itself
        with database.transaction() as unit:  # the pool holds one connection
            backends = [
                connection.info.backend_pid,
                unit.execute_sql("SELECT pg_backend_pid()")[0][0],
            ]

        @contextmanager
        def statement() -> Iterator[UnitOfWork]:
            yield bare

        ways: dict[str, Callable[[], AbstractContextManager[UnitOfWork]]] = {
            "statement": statement,
            "unit_of_work": database.transaction,
        }

        # The floor: one round trip, and an empty unit of work
        for way, begin in ways.items():

            def select_1(
                _: int, begin: Callable[[], AbstractContextManager[UnitOfWork]] = begin
            ) -> None:
                with begin() as unit:
                    unit.execute_sql("SELECT 1")

            timed(WARMUP, select_1, backends)
            results[f"select_1_{way}"] = timed(samples, select_1, backends)

        # Step completion: claim the first step of pending tasks (not timed), then apply
        steps = [
            row[0]
            for row in connection.execute(
                "SELECT s.step_uuid FROM unnest(%s::uuid[]) WITH ORDINALITY AS t(task_uuid, n)"
                "  JOIN tasker.workflow_steps s ON s.task_uuid = t.task_uuid AND s.position = 0"
                " ORDER BY t.n",
                (pending[: 2 * (samples + WARMUP)],),
            )
        ]
        assert len(steps) == 2 * (samples + WARMUP), "not enough pending tasks"
        with database.transaction() as unit:
            fences = {c.step_uuid: c.fence for c in repository.claim_steps(unit, steps)}
        assert len(fences) == len(steps)
        now = datetime.now(UTC)
        for offset, (way, begin) in enumerate(ways.items()):
            batch = steps[offset * (samples + WARMUP) : (offset + 1) * (samples + WARMUP)]

            def complete(
                i: int,
                batch: list[UUID] = batch,
                begin: Callable[[], AbstractContextManager[UnitOfWork]] = begin,
            ) -> None:
                with begin() as unit:
                    outcome = repository.apply_step_result(
                        unit,
                        step_uuid=batch[i],
                        fence=fences[batch[i]],
                        success=True,
                        result=RESULT,
                        error=None,
                        started_at=now,
                        finished_at=now,
                        worker_id="bench",
                    )
                assert outcome.outcome == "applied" and len(outcome.ready_steps) == 1

            timed(WARMUP, complete, backends)
            results[f"step_completion_{way}"] = timed(samples, complete, backends, first=WARMUP)

        # Task creation of the 4-step template
        for way, begin in ways.items():

            def create(
                _: int, begin: Callable[[], AbstractContextManager[UnitOfWork]] = begin
            ) -> None:
                with begin() as unit:
                    creation = repository.create_task(
                        unit, registered, TaskSpec(task_uuid=new_id(), context=CONTEXT)
                    )
                assert creation.created and len(creation.ready_steps) == 1

            timed(WARMUP, create, backends)
            results[f"task_creation_{way}"] = timed(samples, create, backends)
    return results


def explain(url: str, pending: list[UUID]) -> dict[str, str]:
    """EXPLAIN ANALYZE of one step completion and one creation (rolled back)."""
    plans: dict[str, str] = {}
    with psycopg.connect(url) as connection:
        step = connection.execute(
            "SELECT step_uuid FROM tasker.workflow_steps WHERE task_uuid = %s AND position = 0",
            (pending[-1],),
        ).fetchone()
        assert step is not None
        connection.execute("SELECT count(*) FROM tasker.claim_steps(%s, true)", ([step[0]],))
        rows = connection.execute(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM tasker.apply_step_result("
            "%s, 1, true, '{}', NULL, now(), now(), 'bench', 0.1, 0.5)",
            (step[0],),
        ).fetchall()
        plans["apply_step_result"] = "\n".join(r[0] for r in rows)
        connection.rollback()
    return plans


# Reporting ------------------------------------------------------------------------------


def database_facts(url: str) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as connection:

        def one(query: str) -> Any:
            row = connection.execute(query).fetchone()
            assert row is not None
            return row[0]

        return {
            "database_size": one("SELECT pg_size_pretty(pg_database_size(current_database()))"),
            "database_bytes": one("SELECT pg_database_size(current_database())"),
            "tasks": one("SELECT count(*) FROM tasker.tasks"),
            "steps": one("SELECT count(*) FROM tasker.workflow_steps"),
            "task_transitions": one("SELECT count(*) FROM tasker.task_transitions"),
            "step_transitions": one("SELECT count(*) FROM tasker.workflow_step_transitions"),
            "tasks_by_status": dict(
                connection.execute(
                    "SELECT status, count(*) FROM tasker.tasks GROUP BY 1 ORDER BY 1"
                ).fetchall()
            ),
            "server_version": one("SHOW server_version"),
            "synchronous_commit": one("SHOW synchronous_commit"),
            "fsync": one("SHOW fsync"),
            "shared_buffers": one("SHOW shared_buffers"),
        }


def markdown(results: dict[str, dict[str, float]]) -> str:
    floor = results["select_1_statement"]["p50_ms"]
    unit_floor = results["select_1_unit_of_work"]["p50_ms"]
    lines = [
        "| operation | p50 ms | p99 ms | max ms | p50 / SELECT 1 | p50 / BEGIN+SELECT 1+COMMIT "
        "| server CPU ms/op | client CPU ms/op |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in results.items():
        lines.append(
            f"| {name} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} | {row['max_ms']:.3f} "
            f"| {row['p50_ms'] / floor:.1f}x | {row['p50_ms'] / unit_floor:.1f}x "
            f"| {row['server_cpu_ms_per_op']:.3f} | {row['client_cpu_ms_per_op']:.3f} |"
        )
    return "\n".join(lines)


@contextmanager
def fresh_database(keep: bool) -> Iterator[str]:
    name = f"tasker_bench_{uuid.uuid4().hex[:10]}"
    base = ADMIN_URL.rpartition("/")[0]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        if not keep:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--complete-fraction", type=float, default=0.9)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    needed = 2 * (args.samples + WARMUP) + 1  # first steps to complete, and one to explain
    if args.tasks * (1 - args.complete_fraction) < needed:
        parser.error(f"need at least {needed} tasks left pending: raise --tasks or lower the "
                     "--complete-fraction")  # fmt: skip

    load_before = os.getloadavg()
    with fresh_database(args.keep) as url:
        migrate(url)
        database = Database(url, min_size=1, max_size=1)
        repository = StateRepository(database)
        template = linear_template()
        registered = RegisteredTemplate(repository.register_template(template), template)
        print(f"loading {args.tasks} tasks into {url.rpartition('/')[2]} ...", flush=True)
        with psycopg.connect(url, autocommit=True) as connection:
            pending, load_seconds = bulk_load(
                connection, repository, registered, args.tasks, args.complete_fraction
            )
            connection.execute("VACUUM ANALYZE")
        facts = database_facts(url)
        print(f"loaded in {load_seconds:.0f} s: {facts['database_size']}", flush=True)
        results = measure(url, repository, registered, pending, args.samples)
        plans = explain(url, pending)
        database.close()

    goals = {
        "step_completion_p99": results["step_completion_unit_of_work"]["p99_ms"],
        "task_creation_p50": results["task_creation_unit_of_work"]["p50_ms"],
    }
    goals_met = {k: goals[k] <= GOALS_MS[k] for k in GOALS_MS}
    report = {
        "benchmark": "state_bench",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "tasks": args.tasks,
        "samples": args.samples,
        "complete_fraction": args.complete_fraction,
        "load_seconds": round(load_seconds, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "database": facts,
        "results": results,
        "ratios_to_select_1_p50": {
            k: round(v["p50_ms"] / results["select_1_statement"]["p50_ms"], 2)
            for k, v in results.items()
        },
        "goals_ms": GOALS_MS,
        "goals_measured_ms": goals,
        "goals_met": goals_met,
        "explain_apply_step_result": plans["apply_step_result"],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print()
    print(
        f"State layer latency, {facts['tasks']:,} tasks / {facts['steps']:,} steps "
        f"({facts['database_size']}), {args.samples} samples each, "
        f"load average {report['load_average_before'][0]} -> {report['load_average_after'][0]}"
    )
    print()
    print(markdown(results))
    print()
    for key, met in goals_met.items():
        print(f"goal {key} <= {GOALS_MS[key]} ms: {goals[key]:.3f} ms {'met' if met else 'MISSED'}")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
