"""Guarded transitions: typed errors, races between two writers, the transition history,
results of transitive ancestors, and a handler-requested delay beyond any integer."""

from __future__ import annotations

import functools
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from tasker.state.db import Database
from tasker.state.errors import IllegalTransitionError, StaleTransitionError
from tasker.state.migrate import migrate
from tasker.state.records import ClaimedStep, ResultOutcome
from tasker.state.repository import RegisteredTemplate, StateRepository, TaskSpec
from tasker.state.states import StepState, TaskState
from tests.integration.state_helpers import (
    CreatedTask,
    build_template,
    create_task,
    register,
    retry_policy,
    task_snapshot,
)

pytestmark = pytest.mark.postgres

RACES = 10  # rounds per race test: each is a fresh task, so losers and winners vary


@pytest.fixture(scope="module")
def repository(make_database: Callable[[], str]) -> Iterator[StateRepository]:
    url = make_database()
    migrate(url)
    database = Database(url, max_size=4)
    yield StateRepository(database)
    database.close()


@pytest.fixture(scope="module")
def linear(repository: StateRepository) -> RegisteredTemplate:
    """s00 -> s01 -> s02, three attempts each, retries due at once."""
    template = build_template([[], [0], [1]], retry=[retry_policy(max_attempts=3)] * 3)
    return register(repository, template)


def claim(repository: StateRepository, *steps: UUID) -> list[ClaimedStep]:
    with repository.database.transaction() as unit:
        return repository.claim_steps(unit, list(steps))


def apply(
    repository: StateRepository,
    claimed: ClaimedStep,
    *,
    success: bool = True,
    error: dict[str, Any] | None = None,
) -> ResultOutcome:
    now = datetime.now(UTC)
    with repository.database.transaction() as unit:
        return repository.apply_step_result(
            unit,
            step_uuid=claimed.step_uuid,
            fence=claimed.fence,
            success=success,
            result={"name": claimed.name} if success else None,
            error=error,
            started_at=now,
            finished_at=now,
            worker_id="w1",
        )


def race(*actions: Callable[[], Any]) -> list[Any]:
    """Run the actions at once, one thread each; their results or exceptions, in order."""
    barrier = threading.Barrier(len(actions))
    outcomes: list[Any] = [None] * len(actions)

    def run(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = actions[index]()
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


# Typed errors ------------------------------------------------------------------------------


def test_an_illegal_step_transition_names_the_step_and_both_states(
    repository: StateRepository, linear: RegisteredTemplate
) -> None:
    # Given a pending step
    step = create_task(repository, linear).steps["s00"]
    # When it is asked to jump straight to in_progress (only enqueued may)
    with pytest.raises(IllegalTransitionError) as caught, repository.database.transaction() as u:
        repository.transition_step(
            u, step, StepState.IN_PROGRESS, expected=frozenset({StepState.PENDING})
        )
    # Then the error names the step and the transition, and nothing moved
    message = str(caught.value)
    assert str(step) in message
    assert "'pending' -> 'in_progress'" in message
    assert caught.value.kind == "step"
    assert caught.value.uuid == step
    assert repository.step_transitions(step) == []


def test_a_stale_step_transition_reports_expected_and_actual_state(
    repository: StateRepository, linear: RegisteredTemplate
) -> None:
    # Given a step that is still pending
    task = create_task(repository, linear)
    step = task.steps["s00"]
    before = task_snapshot(repository.database, task.task_uuid)
    # When someone moves it as if it had been enqueued
    with pytest.raises(StaleTransitionError) as caught, repository.database.transaction() as u:
        repository.transition_step(
            u, step, StepState.IN_PROGRESS, expected=frozenset({StepState.ENQUEUED})
        )
    # Then the error names the step, the expected and the actual state; nothing changed
    error = caught.value
    assert (error.kind, error.uuid, error.expected, error.actual, error.target) == (
        "step",
        step,
        frozenset({"enqueued"}),
        "pending",
        "in_progress",
    )
    assert str(step) in str(error)
    assert "expected state in [enqueued]" in str(error)
    assert "actual state 'pending'" in str(error)
    assert task_snapshot(repository.database, task.task_uuid) == before


def test_a_stale_task_transition_reports_expected_and_actual_state(
    repository: StateRepository, linear: RegisteredTemplate
) -> None:
    # Given a task that is enqueuing steps
    task = create_task(repository, linear).task_uuid
    # When it is moved to complete (only evaluating_results or initializing may)
    with pytest.raises(StaleTransitionError) as caught, repository.database.transaction() as u:
        repository.transition_task(u, task, TaskState.COMPLETE)
    # Then the error says so
    assert caught.value.kind == "task"
    assert caught.value.actual == "enqueuing_steps"
    assert caught.value.expected == {"evaluating_results", "initializing"}
    assert str(task) in str(caught.value)
    assert repository.get_task(task).status == "enqueuing_steps"


def test_a_legal_transition_returns_the_previous_state_and_records_metadata(
    repository: StateRepository, linear: RegisteredTemplate
) -> None:
    task = create_task(repository, linear)
    step = task.steps["s00"]
    claim(repository, step)

    with repository.database.transaction() as unit:
        previous = repository.transition_step(unit, step, StepState.IN_PROGRESS, worker="w9")

    assert previous == StepState.ENQUEUED
    last = repository.step_transitions(step)[-1]
    assert (last.from_state, last.to_state, last.metadata, last.most_recent) == (
        "enqueued",
        "in_progress",
        {"worker": "w9"},
        True,
    )


# Races ---------------------------------------------------------------------------------------


def test_two_writers_racing_the_same_step_transition_one_wins_one_is_stale(
    repository: StateRepository, linear: RegisteredTemplate
) -> None:
    for _ in range(RACES):
        # Given an enqueued step
        task = create_task(repository, linear)
        step = task.steps["s00"]
        claim(repository, step)

        # When two writers, each in its own transaction, move it enqueued -> in_progress
        def start(step: UUID = step) -> StepState:
            with repository.database.transaction() as unit:
                previous = repository.transition_step(
                    unit, step, StepState.IN_PROGRESS, expected=frozenset({StepState.ENQUEUED})
                )
                time.sleep(0.02)  # hold the row lock: the other writer must wait on it
                return previous

        outcomes = race(start, start)

        # Then exactly one wins and the other is told the state it actually found
        winners = [o for o in outcomes if o == StepState.ENQUEUED]
        losers = [o for o in outcomes if isinstance(o, StaleTransitionError)]
        assert (len(winners), len(losers)) == (1, 1), outcomes
        assert losers[0].actual == "in_progress"
        moves = [(r.from_state, r.to_state) for r in repository.step_transitions(step)]
        assert moves == [("pending", "enqueued"), ("enqueued", "in_progress")]


def test_two_writers_racing_the_same_task_transition_one_wins_one_is_stale(
    repository: StateRepository, linear: RegisteredTemplate
) -> None:
    for _ in range(RACES):
        task = create_task(repository, linear).task_uuid

        def cancel(task: UUID = task) -> TaskState:
            with repository.database.transaction() as unit:
                previous = repository.transition_task(unit, task, TaskState.CANCELLED)
                time.sleep(0.02)
                return previous

        outcomes = race(cancel, cancel)

        assert sorted(map(type, outcomes), key=str) == sorted(
            [TaskState, StaleTransitionError], key=str
        ), outcomes
        loser = next(o for o in outcomes if isinstance(o, StaleTransitionError))
        assert loser.actual == "cancelled"
        cancels = [r for r in repository.task_transitions(task) if r.to_state == "cancelled"]
        assert len(cancels) == 1


def test_two_deliveries_of_the_same_result_racing_apply_it_once(
    repository: StateRepository, linear: RegisteredTemplate
) -> None:
    for _ in range(RACES):
        # Given a claimed step whose result arrives twice at the same moment
        task = create_task(repository, linear)
        (claimed,) = claim(repository, task.steps["s00"])

        deliver = functools.partial(apply, repository, claimed)
        outcomes = race(deliver, deliver)

        # Then one applies it (and readies the child) and the other is a duplicate no-op
        assert sorted(o.outcome for o in outcomes) == ["applied", "duplicate"], outcomes
        applied = next(o for o in outcomes if o.outcome == "applied")
        assert applied.ready_steps == (task.steps["s01"],)
        moves = [r.to_state for r in repository.step_transitions(claimed.step_uuid)]
        assert moves == ["enqueued", "in_progress", "enqueued_for_orchestration", "complete"]


def test_two_orchestrators_racing_to_claim_the_same_step_enqueue_it_once(
    repository: StateRepository, linear: RegisteredTemplate
) -> None:
    for _ in range(RACES):
        task = create_task(repository, linear)
        step = task.steps["s00"]

        orchestrate = functools.partial(claim, repository, step)
        outcomes = race(orchestrate, orchestrate)

        assert sorted(len(o) for o in outcomes) == [0, 1], outcomes
        view = repository.get_task(task.task_uuid).steps[0]
        assert (view.current_state, view.attempts) == ("enqueued", 1)


# History ---------------------------------------------------------------------------------


def run_with_one_retry(repository: StateRepository, task: CreatedTask) -> None:
    """s00 fails once (retryable) then succeeds; s01 and s02 succeed; then finalize."""
    (first,) = claim(repository, task.steps["s00"])
    assert apply(repository, first, success=False, error={"message": "flaky"}).outcome == "applied"
    ready = [task.steps["s00"]]
    while ready:
        for claimed in claim(repository, *ready):
            ready = list(apply(repository, claimed).ready_steps)
    with repository.database.transaction() as unit:
        assert repository.finalize_task(unit, task.task_uuid).status == "complete"


def test_histories_have_contiguous_sort_keys_and_one_most_recent_row(
    repository: StateRepository, linear: RegisteredTemplate
) -> None:
    # Given a task run to completion with a retry on the way
    task = create_task(repository, linear)
    run_with_one_retry(repository, task)

    # Then each history is a chain with sort keys 0.. (task) or 1.. (steps), exactly one
    # most_recent row (the last), ending in the current state
    task_rows = repository.task_transitions(task.task_uuid)
    assert [r.sort_key for r in task_rows] == list(range(len(task_rows)))
    assert [r.most_recent for r in task_rows] == [False] * (len(task_rows) - 1) + [True]
    assert task_rows[-1].to_state == "complete"
    for name, step in task.steps.items():
        rows = repository.step_transitions(step)
        assert [r.sort_key for r in rows] == list(range(1, len(rows) + 1)), name
        assert [r.most_recent for r in rows] == [False] * (len(rows) - 1) + [True], name
        assert all(b.from_state == a.to_state for a, b in itertools.pairwise(rows))
        assert rows[-1].to_state == "complete"
    assert [r.to_state for r in repository.step_transitions(task.steps["s00"])] == [
        "enqueued",
        "in_progress",
        "enqueued_as_error_for_orchestration",
        "waiting_for_retry",
        "enqueued",
        "in_progress",
        "enqueued_for_orchestration",
        "complete",
    ]


def test_across_the_database_every_owner_seq_names_its_last_transition(
    repository: StateRepository, linear: RegisteredTemplate
) -> None:
    # The current row is the one whose sort key is its owner's transition_seq (no flag is
    # stored): so each history must run contiguously up to exactly that number.
    run_with_one_retry(repository, create_task(repository, linear))

    with repository.database.transaction() as unit:
        bad_tasks = unit.execute_sql(
            "SELECT t.task_uuid FROM tasker.tasks t"
            "  LEFT JOIN tasker.task_transitions r USING (task_uuid)"
            " GROUP BY t.task_uuid, t.transition_seq, t.status"
            " HAVING min(r.sort_key) <> 0 OR max(r.sort_key) <> count(r.*) - 1"
            "     OR max(r.sort_key) IS DISTINCT FROM t.transition_seq"
            "     OR (array_agg(r.to_state ORDER BY r.sort_key DESC))[1] <> t.status"
        )
        bad_steps = unit.execute_sql(
            "SELECT s.step_uuid FROM tasker.workflow_steps s"
            "  LEFT JOIN tasker.workflow_step_transitions r USING (step_uuid)"
            " GROUP BY s.step_uuid, s.transition_seq, s.state"
            " HAVING coalesce(min(r.sort_key), 1) <> 1"
            "     OR coalesce(max(r.sort_key), 0) <> count(r.*)"
            "     OR coalesce(max(r.sort_key), 0) <> s.transition_seq"
            "     OR coalesce((array_agg(r.to_state ORDER BY r.sort_key DESC))[1], 'pending')"
            "        <> s.state"
        )
    assert (bad_tasks, bad_steps) == ([], [])


# Dependency results ------------------------------------------------------------------------


def test_a_new_tasks_steps_are_written_with_their_parent_counts_and_later_edges_count(
    repository: StateRepository,
) -> None:
    # Given s00 and s01 both before s02, and s03 after s02, created in a transaction that
    # then adds one more edge, s00 -> s03, as dynamic steps do
    registered = register(repository, build_template([[], [], [0, 1], [2]]))
    task_uuid = uuid.uuid4()
    with repository.database.transaction() as unit:
        repository.create_task(unit, registered, TaskSpec(task_uuid=task_uuid))
        parents_sql = "SELECT name, pending_parents FROM tasker.workflow_steps WHERE task_uuid = %s"
        at_creation = dict(unit.execute_sql(parents_sql, (task_uuid,)))
        unit.execute_sql(
            "INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid, task_uuid)"
            " SELECT f.step_uuid, t.step_uuid, f.task_uuid FROM tasker.workflow_steps f"
            "   JOIN tasker.workflow_steps t USING (task_uuid)"
            "  WHERE f.task_uuid = %s AND f.name = 's00' AND t.name = 's03'",
            (task_uuid,),
        )
        after_new_edge = dict(unit.execute_sql(parents_sql, (task_uuid,)))
    # Then each step counts its parents as created, and the edge added afterwards is
    # counted too: creation's own count does not silence the trigger beyond its insert
    assert at_creation == {"s00": 0, "s01": 0, "s02": 2, "s03": 1}
    assert after_new_edge == {"s00": 0, "s01": 0, "s02": 2, "s03": 2}


def test_a_step_receives_the_results_of_all_its_transitive_ancestors_by_name(
    repository: StateRepository,
) -> None:
    # Given s00 -> s01 -> s02 -> s04 <- s03, and s05 unrelated to s04
    template = build_template([[], [0], [1], [], [2, 3], []])
    task = create_task(repository, register(repository, template))
    ready = [task.steps["s00"], task.steps["s03"], task.steps["s05"]]
    # When every step before s04 completes, each with its own result
    while ready:
        claimed = [c for c in claim(repository, *ready) if c.name != "s04"]
        ready = [s for c in claimed for s in apply(repository, c).ready_steps]
        if ready == [task.steps["s04"]]:
            break
    # Then s04's claim carries the results of s00..s03 (not only its parents s02 and s03),
    # and none of s05's
    (s04,) = claim(repository, task.steps["s04"])
    expected = {name: {"name": name} for name in ("s00", "s01", "s02", "s03")}
    assert s04.dependency_results == expected
    # and the SQL function answers the same in one statement
    with repository.database.transaction() as unit:
        rows = unit.execute_sql("SELECT tasker.ancestor_results(%s)", (task.steps["s04"],))
    assert rows == [(expected,)]


def test_ancestors_resolved_by_hand_appear_without_results(
    repository: StateRepository,
) -> None:
    # Given s00 -> s01 -> s02 where an operator resolved s00 and s01 by hand
    task = create_task(repository, register(repository, build_template([[], [0], [1]])))
    for name in ("s00", "s01"):
        with repository.database.transaction() as unit:
            repository.transition_step(unit, task.steps[name], StepState.RESOLVED_MANUALLY)

    (claimed,) = claim(repository, task.steps["s02"])

    assert claimed.dependency_results == {"s00": None, "s01": None}


# Retry-After -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after_seconds", "expected_delay_seconds"),
    [(3_000_000, 30.0), (1.7e9, 30.0), (1e300, 30.0), (-3_000_000, 0.0), (12.5, 12.5)],
)
def test_a_requested_delay_beyond_the_integer_range_waits_the_cap(
    repository: StateRepository,
    linear: RegisteredTemplate,
    retry_after_seconds: float,
    expected_delay_seconds: float,
) -> None:
    # Given a handler asking for a delay in days, or an epoch timestamp by mistake
    task = create_task(repository, linear)
    (claimed,) = claim(repository, task.steps["s00"])
    before = datetime.now(UTC)
    # When its failure is applied (cap: 30 s)
    outcome = apply(
        repository,
        claimed,
        success=False,
        error={"message": "slow down", "retry_after_seconds": retry_after_seconds},
    )
    # Then the retry waits the cap (or nothing, for a negative delay): no integer overflow
    assert outcome.outcome == "applied"
    assert outcome.step_state == "waiting_for_retry"
    assert outcome.next_retry_at is not None
    waited = (outcome.next_retry_at - before).total_seconds()
    assert expected_delay_seconds - 0.5 <= waited <= expected_delay_seconds + 5


def test_without_a_requested_delay_a_retry_waits_the_policy_s_backoff(
    repository: StateRepository,
) -> None:
    # Given a step with exponential backoff from 60 s (jitter 10 %)
    template = build_template([[]], retry=[retry_policy(backoff="exponential")])
    task = create_task(repository, register(repository, template))
    (claimed,) = claim(repository, task.steps["s00"])
    before = datetime.now(UTC)
    # When its first attempt fails, retryably, with no Retry-After
    outcome = apply(repository, claimed, success=False, error={"message": "flaky"})
    # Then it waits 54-60 s, and is not ready before then
    assert outcome.next_retry_at is not None
    waited = (outcome.next_retry_at - before).total_seconds()
    assert 54 - 0.5 <= waited <= 60 + 5
    assert claim(repository, task.steps["s00"]) == []


def test_recording_publish_confirms_never_waits_for_a_step_another_transaction_holds(
    repository: StateRepository, linear: RegisteredTemplate
) -> None:
    # Given two tasks' first steps claimed for an after-commit broker (not yet confirmed),
    # and a transaction (say, a result processor) holding one of them
    first, second = (create_task(repository, linear) for _ in range(2))
    held, free = first.steps["s00"], second.steps["s00"]
    with repository.database.transaction() as unit:
        claimed = repository.claim_steps(unit, [held, free], published=False)
    with repository.database.transaction() as holder:
        holder.execute_sql(
            "SELECT 1 FROM tasker.workflow_steps WHERE step_uuid = %s FOR UPDATE", (held,)
        )
        # When both confirms are recorded meanwhile (from another thread: a wait on the
        # lock would deadlock the test, which a timeout turns into a failure)
        dispatches = [step.dispatch for step in claimed]
        marking = threading.Thread(target=repository.mark_published, args=(dispatches,))
        marking.start()
        marking.join(timeout=5)
        # Then it returned at once, marking the step nobody held
        assert not marking.is_alive()
    with repository.database.transaction() as unit:
        rows = unit.execute_sql(
            "SELECT step_uuid, published_at IS NOT NULL FROM tasker.workflow_steps"
            " WHERE step_uuid = ANY(%s)",
            ([held, free],),
        )
    assert dict(rows) == {held: False, free: True}


def test_a_late_publish_confirm_does_not_vouch_for_a_newer_dispatch(
    repository: StateRepository, linear: RegisteredTemplate
) -> None:
    # Given a step published after commit (RabbitMQ), failed, and dispatched again
    task = create_task(repository, linear)
    with repository.database.transaction() as unit:
        (first,) = repository.claim_steps(unit, [task.steps["s00"]], published=False)
    apply(repository, first, success=False, error={"message": "flaky"})
    with repository.database.transaction() as unit:
        (second,) = repository.claim_steps(unit, [task.steps["s00"]], published=False)
    assert second.fence == first.fence + 1

    def published() -> bool:
        with repository.database.transaction() as unit:
            rows = unit.execute_sql(
                "SELECT published_at IS NOT NULL FROM tasker.workflow_steps WHERE step_uuid = %s",
                (second.step_uuid,),
            )
        return bool(rows[0][0])

    # When the first dispatch's confirm is recorded only now, it does not count
    repository.mark_published([first.dispatch])
    assert not published()  # the sweep would still re-publish the second dispatch
    # And the second dispatch's own confirm does
    repository.mark_published([second.dispatch])
    assert published()
