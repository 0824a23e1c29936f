"""Decision and batch steps in the state layer, on real PostgreSQL: which steps exist when,
their edges, batch parallelism and failure strategies, checkpoints."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from tasker.state.db import Database
from tasker.state.dispatch import DispatchStep
from tasker.state.migrate import migrate
from tasker.state.records import ResultOutcome
from tasker.state.repository import RetryDefaults, StateRepository
from tests.integration.dynamic_harness import Engine, permanent

pytestmark = pytest.mark.postgres

APPROVAL = """
name: approval
namespace_name: dynamic_tests
version: VERSION
steps:
  - {name: validate, handler: {callable: t.validate}}
  - {name: route, type: decision, dependencies: [validate], handler: {callable: t.route}}
  - {name: auto_approve, dependencies: [route], handler: {callable: t.auto}}
  - {name: manager_approval, dependencies: [route], handler: {callable: t.manager}}
  - {name: finance_review, dependencies: [route], handler: {callable: t.finance}}
  - name: finalize
    type: deferred_convergence
    dependencies: [auto_approve, manager_approval, finance_review]
    handler: {callable: t.finalize}
"""

NESTED = """
name: nested
namespace_name: dynamic_tests
version: VERSION
steps:
  - {name: start, handler: {callable: t.start}}
  - {name: outer, type: decision, dependencies: [start], handler: {callable: t.outer}}
  - {name: a, dependencies: [outer], handler: {callable: t.a}}
  - {name: inner, type: decision, dependencies: [outer], handler: {callable: t.inner}}
  - {name: b, dependencies: [inner], handler: {callable: t.b}}
  - {name: c, dependencies: [inner], handler: {callable: t.c}}
  - {name: end, type: deferred_convergence, dependencies: [a, b, c], handler: {callable: t.e}}
"""


def batch_template(strategy: str, parallelism: int) -> str:
    config = (
        f"{{batch_size: 100, parallelism: {parallelism}, worker_template: work, "
        f"failure_strategy: {strategy}}}"
    )
    return f"""
name: batch_{strategy}
namespace_name: dynamic_tests
version: VERSION
steps:
  - {{name: analyze, type: batchable, handler: {{callable: t.analyze}}, batch_config: {config}}}
  - name: work
    type: batch_worker
    dependencies: [analyze]
    handler: {{callable: t.work}}
    batch_config: {config}
    retry: {{max_attempts: 3, backoff: none}}
  - {{name: total, type: deferred_convergence, dependencies: [work], handler: {{callable: t.t}}}}
"""


def decide(*steps: str) -> dict[str, object]:
    if not steps:
        return {"decision_point_outcome": {"type": "no_branches"}}
    return {"decision_point_outcome": {"type": "create_steps", "step_names": list(steps)}}


def batches(*ranges: tuple[int, int]) -> dict[str, object]:
    configs = [{"start_cursor": start, "end_cursor": end} for start, end in ranges]
    outcome = {"type": "create_batches", "worker_template_name": "work", "cursor_configs": configs}
    return {"batch_processing_outcome": outcome}


@pytest.fixture(scope="module")
def engine(make_database: Callable[[], str]) -> Iterator[Engine]:
    url = make_database()
    migrate(url)
    database = Database(url, max_size=2)
    yield Engine(StateRepository(database, RetryDefaults(jitter=0.0)))
    database.close()


def run_to(engine: Engine, task: object, decision: str, outcome: dict[str, object]) -> None:
    """Complete every claimed step until `decision` is claimed; report `outcome` for it."""
    while True:
        claimed = engine.claim()
        assert claimed, "the decision was never dispatched"
        for name, entry in claimed.items():
            engine.report(entry, outcome if name == decision else {"ok": name})
        if decision in claimed:
            return


def finish(engine: Engine) -> list[str]:
    """Complete everything dispatched until nothing is left; the names in dispatch order."""
    done: list[str] = []
    while claimed := engine.claim():
        for name, entry in claimed.items():
            engine.report(entry, {"ok": name})
            done.append(name)
    return done


# Decisions ---------------------------------------------------------------------------------


def test_a_task_starts_with_the_steps_up_to_its_decision(engine: Engine) -> None:
    task = engine.create(engine.register(APPROVAL))

    assert set(engine.steps(task)) == {"validate", "route"}
    assert engine.repository.get_task(task).total_steps == 2


def test_a_decision_creates_the_chosen_steps_and_the_convergence_waits_for_them(
    engine: Engine,
) -> None:
    task = engine.create(engine.register(APPROVAL))

    run_to(engine, task, "route", decide("manager_approval", "finance_review"))
    steps = engine.steps(task)
    assert set(steps) == {"validate", "route", "manager_approval", "finance_review", "finalize"}
    assert steps["finalize"].dependencies == ["manager_approval", "finance_review"]
    assert steps["manager_approval"].dependencies == ["route"]

    assert finish(engine) == ["manager_approval", "finance_review", "finalize"]
    assert engine.status(task) == "complete"


def test_a_decision_with_no_branches_completes_the_task_without_them(engine: Engine) -> None:
    task = engine.create(engine.register(APPROVAL))

    run_to(engine, task, "route", decide())

    assert set(engine.steps(task)) == {"validate", "route"}
    assert engine.status(task) == "complete"


def test_an_undeclared_step_name_fails_the_decision_permanently(engine: Engine) -> None:
    task = engine.create(engine.register(APPROVAL))

    run_to(engine, task, "route", decide("auto_approve", "bogus"))

    route = engine.steps(task)["route"]
    assert route.current_state == "error" and route.attempts == 1
    assert route.last_error["error_type"] == "invalid_outcome"
    assert "undeclared step(s) ['bogus']" in route.last_error["message"]
    assert "auto_approve, manager_approval, finance_review" in route.last_error["message"]
    assert set(engine.steps(task)) == {"validate", "route"}
    assert engine.status(task) == "error"


def test_a_decision_without_an_outcome_fails_permanently(engine: Engine) -> None:
    task = engine.create(engine.register(APPROVAL))

    run_to(engine, task, "route", {"approved": True})

    route = engine.steps(task)["route"]
    assert route.current_state == "error"
    assert "must return 'decision_point_outcome'" in route.last_error["message"]


def test_nested_decisions_create_the_convergence_once_every_choice_is_made(
    engine: Engine,
) -> None:
    task = engine.create(engine.register(NESTED))

    run_to(engine, task, "outer", decide("a", "inner"))
    assert set(engine.steps(task)) == {"start", "outer", "a", "inner"}  # end waits on inner

    run_to(engine, task, "inner", decide("c"))
    steps = engine.steps(task)
    assert set(steps) == {"start", "outer", "a", "inner", "c", "end"}
    assert steps["end"].dependencies == ["a", "c"]

    finish(engine)
    assert engine.status(task) == "complete"


def plain_result(engine: Engine, entry: DispatchStep, *, success: bool) -> ResultOutcome | None:
    now = datetime.now(UTC)
    with engine.repository.database.transaction() as unit:
        return engine.repository.apply_plain_step_result(
            unit, step_uuid=entry.step.step_uuid, fence=entry.step.fence, success=success,
            result={"decision_point_outcome": {"type": "no_branches"}} if success else None,
            error=None if success else permanent(), started_at=now, finished_at=now,
            worker_id="test",
        )  # fmt: skip


def test_the_plain_result_call_leaves_a_decisions_success_untouched(engine: Engine) -> None:
    task = engine.create(engine.register(APPROVAL))
    engine.report(engine.claim()["validate"], {"ok": "validate"})
    route = engine.claim()["route"]

    assert plain_result(engine, route, success=True) is None  # its outcome needs a look
    assert engine.steps(task)["route"].current_state == "enqueued"
    assert engine.repository.get_task(task).total_steps == 2

    failed = plain_result(engine, route, success=False)  # a failure needs none
    assert failed is not None and failed.outcome == "applied"
    assert failed.step_state == "error"


# Batches -----------------------------------------------------------------------------------


def test_a_batchable_step_creates_one_worker_per_range_with_its_cursor(engine: Engine) -> None:
    task = engine.create(engine.register(batch_template("continue_on_failure", 5)))

    run_to(engine, task, "analyze", batches((0, 100), (100, 200), (200, 250)))

    steps = engine.steps(task)
    assert set(steps) == {"analyze", "work_001", "work_002", "work_003", "total"}
    assert steps["total"].dependencies == ["work_001", "work_002", "work_003"]
    claimed = engine.claim()
    assert set(claimed) == {"work_001", "work_002", "work_003"}
    inputs = claimed["work_003"].inputs or {}
    assert inputs["cursor"] == {
        "batch_id": "003",
        "start_cursor": 200,
        "end_cursor": 250,
        "batch_size": 50,
    }
    assert inputs["is_no_op"] is False
    assert inputs["batch_metadata"]["failure_strategy"] == "continue_on_failure"


def test_no_batches_creates_one_no_op_worker(engine: Engine) -> None:
    task = engine.create(engine.register(batch_template("fail_fast", 2)))

    run_to(engine, task, "analyze", {"batch_processing_outcome": {"type": "no_batches"}})

    claimed = engine.claim()
    assert set(claimed) == {"work_001"}
    assert (claimed["work_001"].inputs or {})["is_no_op"] is True
    engine.report(claimed["work_001"], {"no_op": True})
    assert finish(engine) == ["total"]
    assert engine.status(task) == "complete"


def test_no_more_workers_of_a_batch_run_at_once_than_its_parallelism(engine: Engine) -> None:
    task = engine.create(engine.register(batch_template("continue_on_failure", 2)))
    run_to(engine, task, "analyze", batches(*[(i, i + 1) for i in range(5)]))

    running = engine.claim()
    assert set(running) == {"work_001", "work_002"}
    # Announcing every pending worker again claims none: both slots are taken.
    engine.ready = [engine.steps(task)[f"work_00{i}"].step_uuid for i in range(3, 6)]
    assert engine.claim() == {}

    engine.report(running["work_001"], {"items_processed": 1})
    assert set(engine.claim()) == {"work_003"}


def test_fail_fast_stops_the_batch_at_the_first_permanent_failure(engine: Engine) -> None:
    task = engine.create(engine.register(batch_template("fail_fast", 1)))
    run_to(engine, task, "analyze", batches((0, 1), (1, 2), (2, 3)))

    engine.report(engine.claim()["work_001"], error=permanent())

    assert engine.claim() == {}
    states = {name: s.current_state for name, s in engine.steps(task).items()}
    assert states["work_002"] == states["work_003"] == "pending"
    assert engine.status(task) == "error"


def test_the_plain_result_call_leaves_a_batch_workers_result_to_the_batch(
    engine: Engine,
) -> None:
    task = engine.create(engine.register(batch_template("fail_fast", 1)))
    run_to(engine, task, "analyze", batches((0, 1), (1, 2)))

    assert plain_result(engine, engine.claim()["work_001"], success=False) is None

    assert engine.steps(task)["work_001"].current_state == "enqueued"


def test_continue_on_failure_runs_the_other_workers_then_fails_the_task(engine: Engine) -> None:
    task = engine.create(engine.register(batch_template("continue_on_failure", 1)))
    run_to(engine, task, "analyze", batches((0, 1), (1, 2), (2, 3)))

    engine.report(engine.claim()["work_001"], error=permanent())
    assert engine.status(task) != "error"

    assert finish(engine) == ["work_002", "work_003"]
    states = {name: s.current_state for name, s in engine.steps(task).items()}
    assert states == {
        "analyze": "complete",
        "work_001": "error",
        "work_002": "complete",
        "work_003": "complete",
        "total": "pending",
    }
    assert engine.status(task) == "error"


def test_isolate_sets_a_failed_worker_aside_and_the_batch_completes(engine: Engine) -> None:
    task = engine.create(engine.register(batch_template("isolate", 3)))
    run_to(engine, task, "analyze", batches((0, 1), (1, 2), (2, 3)))

    claimed = engine.claim()
    engine.report(claimed["work_002"], error=permanent("bad row"))
    engine.report(claimed["work_001"], {"items_processed": 1})
    engine.report(claimed["work_003"], {"items_processed": 1})

    assert finish(engine) == ["total"]
    work_002 = engine.steps(task)["work_002"]
    assert work_002.current_state == "resolved_manually"
    assert work_002.results["isolated"] is True
    assert work_002.results["error"]["message"] == "bad row"
    assert engine.status(task) == "complete"


def test_a_batch_outcome_without_ranges_fails_the_batchable_step(engine: Engine) -> None:
    task = engine.create(engine.register(batch_template("fail_fast", 1)))
    bad: dict[str, object] = {
        "batch_processing_outcome": {"type": "create_batches", "cursor_configs": []}
    }

    run_to(engine, task, "analyze", bad)

    analyze = engine.steps(task)["analyze"]
    assert analyze.current_state == "error"
    assert "non-empty cursor_configs" in analyze.last_error["message"]


# Checkpoints -------------------------------------------------------------------------------


def test_a_checkpoint_yield_redispatches_the_worker_with_its_progress(engine: Engine) -> None:
    task = engine.create(engine.register(batch_template("fail_fast", 1)))
    run_to(engine, task, "analyze", batches((0, 100)))
    first = engine.claim()["work_001"]

    outcome = engine.report(first, checkpoint={"cursor": 40, "items_processed": 40})

    assert outcome.outcome == "checkpointed"
    again = engine.claim()["work_001"]
    assert again.step.attempt == first.step.attempt == 1  # a yield uses up no attempt
    assert again.step.fence == first.step.fence + 1
    assert (again.checkpoint or {})["cursor"] == 40
    assert [h["cursor"] for h in (again.checkpoint or {})["history"]] == [40]


def test_a_retry_after_a_failure_resumes_from_the_last_checkpoint(engine: Engine) -> None:
    task = engine.create(engine.register(batch_template("fail_fast", 1)))
    run_to(engine, task, "analyze", batches((0, 100)))
    engine.report(engine.claim()["work_001"], checkpoint={"cursor": 60, "items_processed": 60})
    crashed = engine.claim()["work_001"]

    engine.report(crashed, error={"message": "lost connection", "retryable": True})
    engine.ready = [crashed.step.step_uuid]  # the retry is due at once (backoff none)
    retry = engine.claim()["work_001"]

    assert retry.step.attempt == 2
    assert (retry.checkpoint or {})["cursor"] == 60
    engine.report(retry, {"items_processed": 100})
    assert finish(engine) == ["total"]
    assert engine.status(task) == "complete"


def test_a_redelivered_checkpoint_changes_nothing(engine: Engine) -> None:
    task = engine.create(engine.register(batch_template("fail_fast", 1)))
    run_to(engine, task, "analyze", batches((0, 100)))
    first = engine.claim()["work_001"]
    engine.report(first, checkpoint={"cursor": 10, "items_processed": 10})

    again = engine.report(first, checkpoint={"cursor": 99, "items_processed": 99})

    assert again.outcome == "duplicate"
    assert (engine.claim()["work_001"].checkpoint or {})["cursor"] == 10
