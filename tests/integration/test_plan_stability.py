"""Hot-path SQL keeps index plans however small the tables were when it was first planned.

PL/pgSQL caches a generic plan per statement and session. Planned on an empty database,
a lookup by key can come out as a sequential scan (cheapest for one page) and stay one as
the tables grow: the cost of each call then grows with the database (migration 0008).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tasker.ids import new_id
from tasker.state.db import Database, UnitOfWork
from tasker.state.dispatch import claim_for_dispatch
from tasker.state.migrate import migrate
from tasker.state.repository import RegisteredTemplate, StateRepository, TaskSpec
from tasker.state.template_loader import load_template_file

LINEAR = Path(__file__).parents[2] / "benchmarks" / "e2e_templates" / "linear.yaml"

# Functions that scan by design or run no queries (see migration 0008).
SCANNING_OR_PURE = {
    "stale_tasks",
    "take_unpublished_steps",
    "backoff_delay_ms",
    "step_bucket",
    "next_checkpoint",
}

# Immutable SQL functions are pure expressions: the planner inlines them into the calling
# statement unless they carry a setting, so they must carry none (migration 0013).
_FUNCTIONS = """
SELECT p.proname, coalesce(p.proconfig, '{}'), l.lanname = 'sql' AND p.provolatile = 'i'
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'tasker'::regnamespace
"""


@pytest.fixture
def database_url(make_database: Callable[[], str]) -> str:
    url = make_database()
    migrate(url)
    return url


def test_every_hot_path_function_forbids_sequential_scans(database_url: str) -> None:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(_FUNCTIONS).fetchall()
    unpinned = [
        name
        for name, config, pure in rows
        if not pure and name not in SCANNING_OR_PURE and "enable_seqscan=off" not in config
    ]
    assert rows and unpinned == []


def test_pure_expression_functions_stay_inlinable(database_url: str) -> None:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(_FUNCTIONS).fetchall()
        plan = connection.execute(
            "EXPLAIN (VERBOSE) SELECT tasker.trace_id(t.trace_context),"
            " tasker.continued_trace(t.context, t.trace_context) FROM tasker.tasks t"
        ).fetchall()
    pure = {name: config for name, config, is_pure in rows if is_pure}
    assert {"trace_id", "continued_trace"} <= pure.keys()
    assert {name: config for name, config in pure.items() if config} == {}
    outputs = " ".join(row[0] for row in plan)
    assert "split_part" in outputs and "trace_id(" not in outputs
    assert "continued_trace(" not in outputs


@pytest.fixture
def session(database_url: str) -> Iterator[tuple[StateRepository, UnitOfWork, list[str]]]:
    """One long-lived connection (as in a pool), with the plans of nested statements logged."""
    database = Database(database_url)
    repository = StateRepository(database)
    repository.register_template(load_template_file(LINEAR))
    plans: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        yield repository, UnitOfWork(connection), plans
    database.close()


def test_a_task_run_keeps_index_plans_after_warming_up_on_empty_tables(
    session: tuple[StateRepository, UnitOfWork, list[str]],
) -> None:
    repository, unit, plans = session
    template = repository.get_template("bench", "bench_linear", "1.0.0")
    for _ in range(8):  # past PL/pgSQL's five custom plans: generic plans are cached now
        _run_task(repository, unit, template)
    for statement in (
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_nested_statements = on",
        "SET client_min_messages = log",
    ):
        unit.execute_sql(statement)
    plans.clear()

    _run_task(repository, unit, template)

    assert len(plans) > 20  # the nested statements were seen
    assert [plan for plan in plans if "Seq Scan" in plan] == []


def _run_task(repository: StateRepository, unit: UnitOfWork, template: Any) -> None:
    assert isinstance(template, RegisteredTemplate)
    creation = repository.create_task(unit, template, TaskSpec(new_id()), identity_hash=None)
    ready = creation.ready_steps
    while ready:
        (claimed,) = claim_for_dispatch(unit, ready, published=True)
        now = datetime.now(UTC)
        outcome = repository.apply_step_result(
            unit,
            step_uuid=claimed.step.step_uuid,
            fence=claimed.step.fence,
            success=True,
            result={"ok": True},
            error=None,
            started_at=now,
            finished_at=now,
            worker_id="plan-test",
        )
        ready = outcome.ready_steps
    assert repository.finalize_task(unit, creation.task_uuid).status == "complete"
