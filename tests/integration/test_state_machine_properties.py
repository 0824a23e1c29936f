"""The SQL state machine against a small pure-Python model of Tasker's rules.

Each example creates one task from a random DAG (up to 30 steps, edges only from a lower to
a higher index) with random retry policies, then drives it through random operations:
claims of arbitrary step sets, starts, successes, retryable and permanent failures,
duplicate and stale deliveries, manual resolution, clock advances and finalization. After
every operation the database must agree with the model: step states and attempts, the
readiness set, the task's step counters and a history made only of allowed transitions.
Finally the task is driven to its end and must finish as the model predicts.

The model's rules (the spec of the state layer):
- ready = pending, or waiting_for_retry with its backoff elapsed; every parent complete or
  resolved_manually; first attempt, or retryable with attempts < max_attempts; the task
  active and no step of it in error (fail fast);
- a claim counts the attempt; a result applies only to the claimed attempt of an enqueued or
  in-progress step, anything else is a no-op;
- a failure retries iff the step and the error are retryable and attempts < max_attempts;
- finalize: all steps complete/resolved -> complete; a step in error and nothing in flight
  -> error; otherwise nothing.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tasker.state.db import Database
from tasker.state.errors import StaleTransitionError
from tasker.state.migrate import migrate
from tasker.state.records import ResultOutcome
from tasker.state.repository import RetryDefaults, StateRepository
from tasker.state.states import (
    STEP_TRANSITIONS,
    TASK_TRANSITIONS,
    StepState,
    TaskState,
)
from tasker.state.template_model import Backoff
from tests.integration.state_helpers import (
    READY_STEPS_SQL,
    build_template,
    create_task,
    register,
    retry_policy,
    step_name,
    task_snapshot,
)

pytestmark = pytest.mark.postgres

MAX_EXAMPLES = int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", 40))
IN_FLIGHT = frozenset({"enqueued", "in_progress"})
SATISFYING = frozenset({"complete", "resolved_manually"})
# Jitter only shortens a delay, to no less than (1 - JITTER) of it.
JITTER = 0.1
NOW_TOLERANCE = timedelta(seconds=2)
ACTIONS = [
    "apply_result",
    "claim",
    "apply_result",
    "start",
    "claim",
    "apply_result",
    "redeliver",
    "stray_result",
    "stale_transition",
    "time_passes",
    "resolve",
    "finalize",
]
FALLBACK = ["apply_result", "claim", "time_passes", "finalize"]
# Mostly successes, so that large workflows get far before a failure stops them.
OUTCOMES = ["success", "retryable", "success", "permanent", "success", "retryable"]


@pytest.fixture(scope="module")
def repository(make_database: Callable[[], str]) -> Iterator[StateRepository]:
    url = make_database()
    migrate(url)
    database = Database(url, max_size=2)
    yield StateRepository(database, RetryDefaults(jitter=JITTER))
    database.close()


# The model -------------------------------------------------------------------------------


@dataclass
class ModelStep:
    name: str
    parents: tuple[int, ...]
    retryable: bool
    max_attempts: int
    backoff: Backoff
    state: str = "pending"
    attempts: int = 0
    due: bool = False  # a waiting_for_retry step whose backoff has elapsed
    results: Any = None


@dataclass
class Model:
    steps: list[ModelStep]
    finished: str | None = None  # the task's terminal state once finalized
    ancestors: list[frozenset[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for step in self.steps:
            found: set[int] = set(step.parents)
            for parent in step.parents:
                found |= self.ancestors[parent]
            self.ancestors.append(frozenset(found))

    def indices(self, *states: str) -> list[int]:
        return [i for i, step in enumerate(self.steps) if step.state in states]

    def any_error(self) -> bool:
        return bool(self.indices("error"))

    def in_flight(self) -> list[int]:
        return self.indices(*IN_FLIGHT)

    def parents_satisfied(self, index: int) -> bool:
        return all(self.steps[p].state in SATISFYING for p in self.steps[index].parents)

    def ready(self) -> set[int]:
        if self.finished is not None or self.any_error():
            return set()
        return {
            i
            for i, step in enumerate(self.steps)
            if (step.state == "pending" or (step.state == "waiting_for_retry" and step.due))
            and (step.attempts == 0 or (step.retryable and step.attempts < step.max_attempts))
            and self.parents_satisfied(i)
        }

    def claim(self, requested: set[int]) -> set[int]:
        claimed = requested & self.ready()
        for index in claimed:
            self.steps[index].state = "enqueued"
            self.steps[index].attempts += 1
        return claimed

    def dependency_results(self, index: int) -> dict[str, Any]:
        return {
            self.steps[a].name: self.steps[a].results
            for a in self.ancestors[index]
            if self.steps[a].state in SATISFYING
        }

    def apply(self, index: int, success: bool, retryable_error: bool, delay_ms: int) -> str:
        """Apply a result for the current attempt of an in-flight step; its new state."""
        step = self.steps[index]
        if success:
            step.state = "complete"
            step.results = {"by": step.name, "attempt": step.attempts}
        elif retryable_error and step.retryable and step.attempts < step.max_attempts:
            step.state = "waiting_for_retry"
            step.due = delay_ms == 0
        else:
            step.state = "error"
        return step.state

    def newly_ready_children(self, index: int) -> set[int]:
        return {
            child
            for child, step in enumerate(self.steps)
            if index in step.parents and step.state == "pending" and self.parents_satisfied(child)
        }

    def next_task_state(self, has_ready: bool) -> str:
        """The execution status after a result (failures first, then ready work, ...)."""
        failed = self.any_error()
        in_flight = bool(self.in_flight())
        if failed and not in_flight:
            return "blocked_by_failures"
        if failed:
            return "steps_in_process"
        if has_ready:
            return "enqueuing_steps"
        if in_flight:
            return "steps_in_process"
        if all(step.state in SATISFYING for step in self.steps):
            return "evaluating_results"
        if self.indices("waiting_for_retry"):
            return "waiting_for_retry"
        return "waiting_for_dependencies"

    def finalize(self) -> tuple[bool, str | None]:
        """(finalized, status) finalize_task must report; None: the task stays active."""
        if self.finished is not None:
            return False, self.finished
        if all(step.state in SATISFYING for step in self.steps):
            self.finished = "complete"
        elif self.any_error() and not self.in_flight():
            self.finished = "error"
        else:
            return False, None
        return True, self.finished


def expected_delay_ms(step: ModelStep, retry_after_seconds: int | None) -> int:
    """The un-jittered delay of `retry_policy` policies (base 1 s/60 s, cap 30 s/600 s)."""
    cap = 30_000 if step.backoff == "none" else 600_000
    if retry_after_seconds is not None:
        return min(retry_after_seconds * 1000, cap)
    if step.backoff == "none":
        return 0
    base, attempt = 60_000, step.attempts
    if step.backoff == "linear":
        return min(base * attempt, cap)
    if step.backoff == "fibonacci":
        previous, current = 0, 1
        for _ in range(attempt - 1):
            previous, current = current, previous + current
        return min(base * current, cap)
    return min(base * (1 << (attempt - 1)), cap)


@st.composite
def workflows(draw: st.DrawFn) -> list[ModelStep]:
    """A random DAG with a random retry policy per step."""
    size = draw(st.integers(min_value=1, max_value=30))
    steps = []
    for index in range(size):
        parents = draw(st.sets(st.integers(0, index - 1), max_size=3)) if index else set()
        steps.append(
            ModelStep(
                name=step_name(index),
                parents=tuple(sorted(parents)),
                retryable=draw(st.booleans()),
                max_attempts=draw(st.integers(min_value=1, max_value=4)),
                backoff=draw(
                    st.sampled_from(["none", "none", "exponential", "linear", "fibonacci"])
                ),
            )
        )
    return steps


IN_PROCESS_OR_READY = frozenset({"steps_in_process", "enqueuing_steps"})


# The machine -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedResult:
    index: int
    attempt: int
    success: bool
    error: dict[str, Any] | None


class StateMachineAgainstModel(RuleBasedStateMachine):
    repository: ClassVar[StateRepository]

    def __init__(self) -> None:
        super().__init__()
        self.model = Model([])
        self.task_uuid: UUID | None = None
        self.step_uuids: list[UUID] = []
        self.by_uuid: dict[UUID, int] = {}
        self.applied: list[AppliedResult] = []

    @property
    def database(self) -> Database:
        return self.repository.database

    # Setup ---------------------------------------------------------------------------------

    @initialize(steps=workflows())
    def create_task(self, steps: list[ModelStep]) -> None:
        self.model = Model(steps)
        policies = [
            retry_policy(retryable=s.retryable, max_attempts=s.max_attempts, backoff=s.backoff)
            for s in steps
        ]
        template = build_template([s.parents for s in steps], retry=policies)
        created = create_task(self.repository, register(self.repository, template))
        self.task_uuid = created.task_uuid
        self.step_uuids = [created.steps[s.name] for s in steps]
        self.by_uuid = {uuid: index for index, uuid in enumerate(self.step_uuids)}

    # Operations ----------------------------------------------------------------------------

    # One rule picks the operation: hypothesis favours the first choices of a sampled_from,
    # so the pipeline's own operations come first and weigh most; when the one drawn does
    # not apply (nothing in flight, nothing ready), the next one that does is taken.

    @rule(data=st.data(), action=st.sampled_from(ACTIONS))
    def act(self, data: st.DataObject, action: str) -> None:
        applicable = {
            "apply_result": bool(self.model.in_flight()),
            "claim": bool(self.model.ready()),
            "start": bool(self.model.indices("enqueued")),
            "redeliver": bool(self.applied),
        }
        order = [action, *FALLBACK]
        action = next(a for a in order if applicable.get(a, True))
        getattr(self, action)(data)

    def claim(self, data: st.DataObject) -> None:
        # Given any set of steps (ready or not, or exactly the ready ones)
        everything = range(len(self.model.steps))
        mode = data.draw(st.sampled_from(["ready", "ready", "any", "all"]), label="mode")
        requested = {
            "ready": lambda: self.model.ready(),
            "any": lambda: data.draw(st.sets(st.sampled_from(everything)), label="requested"),
            "all": lambda: set(everything),
        }[mode]()
        expected = self.model.ready() & requested
        # When they are claimed
        with self.database.transaction() as unit:
            claimed = self.repository.claim_steps(unit, [self.step_uuids[i] for i in requested])
        # Then exactly the ready ones move to enqueued, each on its next attempt, with the
        # results of all its completed ancestors
        self.model.claim(requested)
        assert {self.by_uuid[c.step_uuid] for c in claimed} == expected
        for step in claimed:
            index = self.by_uuid[step.step_uuid]
            model_step = self.model.steps[index]
            assert self.model.parents_satisfied(index)
            assert step.attempt == step.fence == model_step.attempts <= model_step.max_attempts
            assert step.dependency_results == self.model.dependency_results(index)
        if claimed:
            self.assert_parents_satisfied_in_database([c.step_uuid for c in claimed])

    def assert_parents_satisfied_in_database(self, steps: list[UUID]) -> None:
        with self.database.transaction() as unit:
            unsatisfied = unit.execute_sql(
                "SELECT e.to_step_uuid, p.state FROM tasker.workflow_step_edges e"
                "  JOIN tasker.workflow_steps p ON p.step_uuid = e.from_step_uuid"
                " WHERE e.to_step_uuid = ANY(%s)"
                "   AND p.state NOT IN ('complete', 'resolved_manually')",
                (steps,),
            )
        assert unsatisfied == []

    def start(self, data: st.DataObject) -> None:
        index = data.draw(st.sampled_from(self.model.indices("enqueued")), label="step")
        with self.database.transaction() as unit:
            previous = self.repository.transition_step(
                unit,
                self.step_uuids[index],
                StepState.IN_PROGRESS,
                expected=frozenset({StepState.ENQUEUED}),
                worker="w1",
            )
        assert previous == StepState.ENQUEUED
        self.model.steps[index].state = "in_progress"

    def apply_result(self, data: st.DataObject) -> None:
        outcome = data.draw(st.sampled_from(OUTCOMES), label="outcome")
        retryable_key = data.draw(st.sampled_from([True, None]), label="retryable_key")
        retry_after = data.draw(st.sampled_from([None, None, 0, 5, 120]), label="retry_after")
        index = data.draw(st.sampled_from(self.model.in_flight()), label="step")
        step = self.model.steps[index]
        error: dict[str, Any] | None = None
        if outcome != "success":
            error = {"message": f"{outcome} failure", "error_class": "TestError"}
            if outcome == "permanent":
                error["retryable"] = False
            elif retryable_key is not None:  # retryable unless it says otherwise
                error["retryable"] = retryable_key
            if retry_after is not None:
                error["retry_after_seconds"] = retry_after
        delay_ms = expected_delay_ms(step, retry_after)
        attempt = step.attempts

        assert self.task_uuid is not None
        prior_status = self.repository.get_task(self.task_uuid).status
        before = datetime.now(UTC)
        result = self.apply(index, attempt, outcome == "success", error)
        after = datetime.now(UTC)

        new_state = self.model.apply(index, outcome == "success", outcome == "retryable", delay_ms)
        self.applied.append(AppliedResult(index, attempt, outcome == "success", error))
        assert result.outcome == "applied"
        assert result.step_state == new_state
        newly_ready = self.model.newly_ready_children(index) if outcome == "success" else set()
        has_ready = bool(newly_ready) and not self.model.any_error()
        next_status = self.model.next_task_state(has_ready)
        # A task in process stays there when its work goes on (the ready steps are
        # claimed in the caller's transaction); otherwise it moves to the next state.
        stays = prior_status == "steps_in_process" and next_status in IN_PROCESS_OR_READY
        assert result.task_status == ("steps_in_process" if stays else next_status)
        expected_ready = newly_ready if next_status == "enqueuing_steps" else set()
        assert {self.by_uuid[s] for s in result.ready_steps} == expected_ready
        assert result.finalize == (
            result.task_status in ("evaluating_results", "blocked_by_failures")
        )
        if new_state == "waiting_for_retry":
            assert result.next_retry_at is not None
            earliest = before + timedelta(milliseconds=int(delay_ms * (1 - JITTER)))
            latest = after + timedelta(milliseconds=delay_ms)
            assert earliest - NOW_TOLERANCE <= result.next_retry_at <= latest + NOW_TOLERANCE
        else:
            assert result.next_retry_at is None

    def apply(
        self, index: int, attempt: int, success: bool, error: dict[str, Any] | None
    ) -> ResultOutcome:
        now = datetime.now(UTC)
        with self.database.transaction() as unit:
            return self.repository.apply_step_result(
                unit,
                step_uuid=self.step_uuids[index],
                fence=attempt,  # no operator resets here, so the dispatch count is the attempt
                success=success,
                result={"by": step_name(index), "attempt": attempt} if success else None,
                error=error,
                started_at=now,
                finished_at=now,
                worker_id="w1",
            )

    def redeliver(self, data: st.DataObject) -> None:
        # Given a result that was already applied (its attempt may since have been retried)
        old = data.draw(st.sampled_from(self.applied), label="redelivered")
        self.assert_no_op(old.index, old.attempt, old.success, old.error)

    def stray_result(self, data: st.DataObject) -> None:
        success = data.draw(st.booleans(), label="success")
        index = data.draw(st.integers(0, len(self.model.steps) - 1), label="step")
        step = self.model.steps[index]
        attempt = data.draw(st.integers(0, 5), label="attempt")
        if step.state in IN_FLIGHT and attempt == step.attempts:
            return  # that one is a real result, not a stray one
        self.assert_no_op(index, attempt, success, None if success else {"message": "late"})

    def assert_no_op(
        self, index: int, attempt: int, success: bool, error: dict[str, Any] | None
    ) -> None:
        before = self.snapshot()
        result = self.apply(index, attempt, success, error)
        # Then nothing changes and the delivery is named duplicate (same attempt) or stale
        step = self.model.steps[index]
        assert result.outcome == ("duplicate" if attempt == step.attempts else "stale")
        assert result.step_state == step.state
        assert result.ready_steps == ()
        assert not result.finalize
        assert self.snapshot() == before

    def snapshot(self) -> list[tuple[Any, ...]]:
        assert self.task_uuid is not None
        return task_snapshot(self.database, self.task_uuid)

    def stale_transition(self, data: st.DataObject) -> None:
        candidates = [i for i, s in enumerate(self.model.steps) if s.state != "enqueued"]
        if not candidates:
            return
        index = data.draw(st.sampled_from(candidates), label="step")
        with pytest.raises(StaleTransitionError) as caught, self.database.transaction() as unit:
            self.repository.transition_step(
                unit,
                self.step_uuids[index],
                StepState.IN_PROGRESS,
                expected=frozenset({StepState.ENQUEUED}),
            )
        assert caught.value.actual == self.model.steps[index].state

    def time_passes(self, data: st.DataObject | None = None) -> None:
        # Every waiting retry falls due (its backoff has elapsed)
        with self.database.transaction() as unit:
            unit.execute_sql(
                "UPDATE tasker.workflow_steps SET next_retry_at = clock_timestamp()"
                " - interval '1 millisecond'"
                " WHERE task_uuid = %s AND state = 'waiting_for_retry'",
                (self.task_uuid,),
            )
        for step in self.model.steps:
            step.due = True

    def resolve(self, data: st.DataObject) -> None:
        # An operator's action, from any state but the terminal ones
        movable = self.model.indices("pending", "waiting_for_retry", "error", *IN_FLIGHT)
        if not movable:
            return
        index = data.draw(st.sampled_from(movable), label="step")
        with self.database.transaction() as unit:
            previous = self.repository.transition_step(
                unit, self.step_uuids[index], StepState.RESOLVED_MANUALLY, operator="test"
            )
        assert previous == self.model.steps[index].state
        self.model.steps[index].state = "resolved_manually"

    def finalize(self, data: st.DataObject | None = None) -> None:
        assert self.task_uuid is not None
        with self.database.transaction() as unit:
            result = self.repository.finalize_task(unit, self.task_uuid)
        finalized, status = self.model.finalize()
        assert result.finalized == finalized
        if status is not None:
            assert result.status == status
        else:
            assert result.status not in {"complete", "error", "cancelled", "resolved_manually"}

    # Invariants ----------------------------------------------------------------------------

    @invariant()
    def database_agrees_with_model(self) -> None:
        if self.task_uuid is None:
            return
        with self.database.transaction() as unit:
            steps = unit.execute_sql(
                "SELECT name, state, attempts, max_attempts, step_uuid, transition_seq"
                "  FROM tasker.workflow_steps WHERE task_uuid = %s",
                (self.task_uuid,),
            )
            ready = {row[0] for row in unit.execute_sql(READY_STEPS_SQL, (self.task_uuid,))}
            task = unit.execute_sql(
                "SELECT status, total_steps, pending_steps, in_flight_steps, retrying_steps,"
                "       done_steps, failed_steps, cancelled_steps, transition_seq"
                "  FROM tasker.tasks WHERE task_uuid = %s",
                (self.task_uuid,),
            )[0]
            task_history = unit.execute_sql(
                "SELECT r.from_state, r.to_state, r.sort_key, r.sort_key = t.transition_seq"
                "  FROM tasker.task_transitions r JOIN tasker.tasks t USING (task_uuid)"
                " WHERE r.task_uuid = %s ORDER BY r.sort_key",
                (self.task_uuid,),
            )
            step_history = unit.execute_sql(
                "SELECT r.step_uuid, r.from_state, r.to_state, r.sort_key,"
                "       r.sort_key = s.transition_seq"
                "  FROM tasker.workflow_step_transitions r"
                "  JOIN tasker.workflow_steps s USING (step_uuid)"
                " WHERE r.task_uuid = %s ORDER BY r.step_uuid, r.sort_key",
                (self.task_uuid,),
            )
        model = self.model
        # Step states and attempts; attempts never exceed max_attempts
        assert {row[0]: (row[1], row[2]) for row in steps} == {
            s.name: (s.state, s.attempts) for s in model.steps
        }
        assert all(row[2] <= row[3] for row in steps)
        # The readiness set
        assert ready == {model.steps[i].name for i in model.ready()}
        # The trigger-kept counters
        states = [s.state for s in model.steps]
        assert task[1:8] == (
            len(states),
            states.count("pending"),
            sum(s in IN_FLIGHT for s in states),
            states.count("waiting_for_retry"),
            sum(s in SATISFYING for s in states),
            states.count("error"),
            states.count("cancelled"),
        )
        if model.finished is None:
            assert task[0] not in {"complete", "error", "cancelled", "resolved_manually"}
        else:
            assert task[0] == model.finished
        # Histories: chains of allowed transitions, ending at the current state
        check_history(
            task_history,
            first=(None, 0),
            last=(task[0], task[8]),
            allowed=lambda a, b: TaskState(b) in TASK_TRANSITIONS[TaskState(a)],
        )
        per_step: dict[UUID, list[tuple[Any, ...]]] = {row[4]: [] for row in steps}
        for row in step_history:
            per_step[row[0]].append(row[1:])
        for _, state, _, _, step_uuid, seq in steps:
            if seq == 0:
                assert per_step[step_uuid] == []
                continue
            check_history(
                per_step[step_uuid],
                first=("pending", 1),
                last=(state, seq),
                allowed=lambda a, b: StepState(b) in STEP_TRANSITIONS[StepState(a)],
            )

    def teardown(self) -> None:
        if self.task_uuid is not None and self.model.finished is None:
            self.drive_to_the_end()

    def drive_to_the_end(self) -> None:
        """Every due retry, ready step and in-flight step succeeds; then finalize."""
        for _ in range(4 * len(self.model.steps) + 2):
            self.time_passes()
            for index in self.model.in_flight():
                self.model.apply(index, True, False, 0)
                assert self.apply(index, self.model.steps[index].attempts, True, None).outcome == (
                    "applied"
                )
            ready = self.model.ready()
            if not ready:
                break
            with self.database.transaction() as unit:
                claimed = self.repository.claim_steps(unit, [self.step_uuids[i] for i in ready])
            assert {self.by_uuid[c.step_uuid] for c in claimed} == self.model.claim(ready)
        # Then the task ends as predicted: complete without errors, error with them
        expected = "error" if self.model.any_error() else "complete"
        self.finalize()
        assert self.model.finished == expected
        self.database_agrees_with_model()


def check_history(
    rows: list[tuple[Any, ...]],
    *,
    first: tuple[str | None, int],
    last: tuple[str, int],
    allowed: Callable[[str, str], bool],
) -> None:
    """(from, to, sort_key, is the owner's transition_seq) rows: a chain from `first` to
    `last` (state and sequence number) with contiguous sort keys, only allowed moves, and
    the owner's transition_seq naming the last row only (it is how the current row is
    found: the history keeps no flag)."""
    assert rows, "no history"
    assert (rows[0][0], rows[0][2]) == first
    assert (rows[-1][1], rows[-1][2]) == last
    assert [r[2] for r in rows] == list(range(first[1], first[1] + len(rows)))
    assert [r[3] for r in rows] == [False] * (len(rows) - 1) + [True]
    for previous, current in itertools.pairwise(rows):
        assert current[0] == previous[1], f"broken chain: {previous} then {current}"
    for from_state, to_state, _, _ in rows[1 if first[0] is None else 0 :]:
        assert from_state is not None
        assert allowed(from_state, to_state), f"{from_state} -> {to_state} is not allowed"


def test_the_sql_state_machine_follows_the_model(repository: StateRepository) -> None:
    StateMachineAgainstModel.repository = repository
    run_state_machine_as_test(
        StateMachineAgainstModel,
        settings=settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
