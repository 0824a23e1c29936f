"""The state-machine table (`tasker.state.states`): Tasker's states, and every transition
the SQL functions perform is one the table allows."""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib.resources import files
from typing import TypeVar, get_args

import pytest

from tasker.state.operations import StepAction, allowed_sources
from tasker.state.states import (
    SATISFYING_STEP_STATES,
    STEP_TRANSITIONS,
    TASK_TRANSITIONS,
    TERMINAL_STEP_STATES,
    TERMINAL_TASK_STATES,
    StepState,
    TaskState,
    step_sources,
    step_transition_allowed,
    task_sources,
    task_transition_allowed,
)

T = TaskState
S = StepState


def test_there_are_tasker_s_twelve_task_states_and_ten_step_states() -> None:
    assert {s.value for s in TaskState} == {
        "pending",
        "initializing",
        "enqueuing_steps",
        "steps_in_process",
        "evaluating_results",
        "waiting_for_dependencies",
        "waiting_for_retry",
        "blocked_by_failures",
        "complete",
        "error",
        "cancelled",
        "resolved_manually",
    }
    assert {s.value for s in StepState} == {
        "pending",
        "enqueued",
        "in_progress",
        "enqueued_for_orchestration",
        "enqueued_as_error_for_orchestration",
        "waiting_for_retry",
        "complete",
        "error",
        "cancelled",
        "resolved_manually",
    }
    assert set(TASK_TRANSITIONS) == set(TaskState)
    assert set(STEP_TRANSITIONS) == set(StepState)
    assert {S.COMPLETE, S.RESOLVED_MANUALLY} == SATISFYING_STEP_STATES


def test_final_states_have_no_way_out_and_error_only_the_operator_s() -> None:
    for final in (T.COMPLETE, T.CANCELLED, T.RESOLVED_MANUALLY):
        assert TASK_TRANSITIONS[final] == frozenset(), final
    for final_step in (S.COMPLETE, S.CANCELLED, S.RESOLVED_MANUALLY):
        assert STEP_TRANSITIONS[final_step] == frozenset(), final_step
    # error is terminal for the pipeline; only an operator revives or resolves it
    assert {T.COMPLETE, T.ERROR, T.CANCELLED, T.RESOLVED_MANUALLY} == TERMINAL_TASK_STATES
    assert {S.COMPLETE, S.ERROR, S.CANCELLED, S.RESOLVED_MANUALLY} == TERMINAL_STEP_STATES
    assert TASK_TRANSITIONS[T.ERROR] == {T.EVALUATING_RESULTS, T.RESOLVED_MANUALLY}
    assert STEP_TRANSITIONS[S.ERROR] == {S.PENDING, S.RESOLVED_MANUALLY, S.COMPLETE}


X = TypeVar("X")


def reachable(table: Mapping[X, frozenset[X]], start: X) -> set[X]:
    seen = {start}
    frontier = [start]
    while frontier:
        for target in table[frontier.pop()]:
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    return seen


def test_no_state_moves_to_itself_and_every_state_is_reachable() -> None:
    assert all(state not in targets for state, targets in TASK_TRANSITIONS.items())
    assert all(state not in targets for state, targets in STEP_TRANSITIONS.items())
    assert reachable(TASK_TRANSITIONS, T.PENDING) == set(TaskState)
    assert reachable(STEP_TRANSITIONS, S.PENDING) == set(StepState)


def test_sources_are_the_inverse_of_the_table() -> None:
    for task_target in TaskState:
        assert task_sources(task_target) == {
            s for s in TaskState if task_transition_allowed(s, task_target)
        }
    for step_target in StepState:
        assert step_sources(step_target) == {
            s for s in StepState if step_transition_allowed(s, step_target)
        }


# Every transition the SQL performs ----------------------------------------------------------

ACTIVE_TASK = [
    T.ENQUEUING_STEPS,
    T.STEPS_IN_PROCESS,
    T.EVALUATING_RESULTS,
    T.WAITING_FOR_DEPENDENCIES,
    T.WAITING_FOR_RETRY,
    T.BLOCKED_BY_FAILURES,
]
# tasker.next_task_state's answers, where apply_step_result and reevaluate_task go next
NEXT_TASK_STATES = [
    T.BLOCKED_BY_FAILURES,
    T.STEPS_IN_PROCESS,
    T.ENQUEUING_STEPS,
    T.WAITING_FOR_DEPENDENCIES,
    T.WAITING_FOR_RETRY,
]

#: Read from the migrations, function by function (states held in variables included).
SQL_TASK_TRANSITIONS: dict[str, list[tuple[TaskState, TaskState]]] = {
    "create_task": [
        (T.PENDING, T.INITIALIZING),
        (T.INITIALIZING, T.COMPLETE),
        (T.INITIALIZING, T.ENQUEUING_STEPS),
    ],
    "claim_steps": [
        (T.WAITING_FOR_RETRY, T.ENQUEUING_STEPS),
        (T.WAITING_FOR_DEPENDENCIES, T.ENQUEUING_STEPS),
        (T.ENQUEUING_STEPS, T.STEPS_IN_PROCESS),
    ],
    "apply_step_result": [
        *[(s, T.EVALUATING_RESULTS) for s in ACTIVE_TASK if s != T.EVALUATING_RESULTS],
        *[(T.EVALUATING_RESULTS, s) for s in NEXT_TASK_STATES],
    ],
    "finalize_task": [
        *[(s, T.EVALUATING_RESULTS) for s in ACTIVE_TASK if s != T.EVALUATING_RESULTS],
        (T.EVALUATING_RESULTS, T.BLOCKED_BY_FAILURES),
        (T.EVALUATING_RESULTS, T.COMPLETE),
        (T.BLOCKED_BY_FAILURES, T.ERROR),
    ],
    "reevaluate_task": [
        *[(s, T.EVALUATING_RESULTS) for s in [*ACTIVE_TASK, T.ERROR] if s != T.EVALUATING_RESULTS],
        *[(T.EVALUATING_RESULTS, s) for s in NEXT_TASK_STATES],
    ],
    "cancel_task": [(s, T.CANCELLED) for s in [T.PENDING, T.INITIALIZING, *ACTIVE_TASK]],
    "mark_tasks_in_process": [
        *[(s, T.EVALUATING_RESULTS) for s in ACTIVE_TASK[3:]],
        (T.ENQUEUING_STEPS, T.STEPS_IN_PROCESS),
        (T.EVALUATING_RESULTS, T.STEPS_IN_PROCESS),
    ],
    "after_batch_worker_result": [
        (T.BLOCKED_BY_FAILURES, T.EVALUATING_RESULTS),
        (T.EVALUATING_RESULTS, T.ENQUEUING_STEPS),
    ],
    "fail_stale_task": [
        (s, T.ERROR)
        for s in [
            T.WAITING_FOR_DEPENDENCIES,
            T.WAITING_FOR_RETRY,
            T.STEPS_IN_PROCESS,
            T.ENQUEUING_STEPS,
            T.EVALUATING_RESULTS,
        ]
    ],
}

SQL_STEP_TRANSITIONS: dict[str, list[tuple[StepState, StepState]]] = {
    "claim_steps": [(S.PENDING, S.ENQUEUED), (S.WAITING_FOR_RETRY, S.ENQUEUED)],
    "apply_step_result": [
        (S.ENQUEUED, S.IN_PROGRESS),
        (S.IN_PROGRESS, S.ENQUEUED_FOR_ORCHESTRATION),
        (S.IN_PROGRESS, S.ENQUEUED_AS_ERROR_FOR_ORCHESTRATION),
        (S.ENQUEUED_FOR_ORCHESTRATION, S.COMPLETE),
        (S.ENQUEUED_AS_ERROR_FOR_ORCHESTRATION, S.WAITING_FOR_RETRY),
        (S.ENQUEUED_AS_ERROR_FOR_ORCHESTRATION, S.ERROR),
    ],
    "cancel_task": [
        (s, S.CANCELLED) for s in [S.PENDING, S.ENQUEUED, S.IN_PROGRESS, S.WAITING_FOR_RETRY]
    ],
    "claim_batch_worker_despite_failures": [
        (S.PENDING, S.ENQUEUED),
        (S.WAITING_FOR_RETRY, S.ENQUEUED),
    ],
    # A long-running step hands back a checkpoint and waits to be dispatched again
    "checkpoint_step": [(S.ENQUEUED, S.IN_PROGRESS), (S.IN_PROGRESS, S.PENDING)],
}


@pytest.mark.parametrize(
    ("function", "moves"), list(SQL_TASK_TRANSITIONS.items()), ids=list(SQL_TASK_TRANSITIONS)
)
def test_every_task_transition_a_sql_function_performs_is_in_the_table(
    function: str, moves: list[tuple[TaskState, TaskState]]
) -> None:
    assert [m for m in moves if not task_transition_allowed(*m)] == []


@pytest.mark.parametrize(
    ("function", "moves"), list(SQL_STEP_TRANSITIONS.items()), ids=list(SQL_STEP_TRANSITIONS)
)
def test_every_step_transition_a_sql_function_performs_is_in_the_table(
    function: str, moves: list[tuple[StepState, StepState]]
) -> None:
    assert [m for m in moves if not step_transition_allowed(*m)] == []


def migrations_sql() -> str:
    folder = files("tasker.state").joinpath("migrations")
    return "\n".join(
        entry.read_text()
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".sql")
    )


def test_every_literal_transition_in_the_migrations_is_listed_above() -> None:
    # Guards the lists: a new move_task(.., 'a', 'b') or record_step_transition(.., 'a', 'b')
    # in the SQL must be added to them (and so checked against the table)
    sql = migrations_sql()
    task_moves = set(re.findall(r"move_task\(\s*[\w.]+,\s*'(\w+)',\s*'(\w+)'", sql))
    step_moves = set(
        re.findall(r"record_step_transition\(\s*[\w.]+,\s*[\w.]+,\s*'(\w+)',\s*'(\w+)'", sql)
    )
    listed_task = {(a.value, b.value) for moves in SQL_TASK_TRANSITIONS.values() for a, b in moves}
    listed_step = {(a.value, b.value) for moves in SQL_STEP_TRANSITIONS.values() for a, b in moves}
    assert task_moves, "the pattern no longer finds move_task calls"
    assert step_moves, "the pattern no longer finds record_step_transition calls"
    assert task_moves <= listed_task
    assert step_moves <= listed_step


def test_operator_actions_only_take_transitions_the_table_allows() -> None:
    # operator_step_action moves a step from the sources the repository passes it
    targets: dict[StepAction, StepState] = {
        "reset_for_retry": S.PENDING,
        "resolve_manually": S.RESOLVED_MANUALLY,
        "complete_manually": S.COMPLETE,
    }
    assert set(get_args(StepAction)) == set(targets)
    for action, target in targets.items():
        sources = allowed_sources(action)
        assert sources, action
        assert all(step_transition_allowed(source, target) for source in sources), action
        assert not sources & {S.ENQUEUED_FOR_ORCHESTRATION, S.ENQUEUED_AS_ERROR_FOR_ORCHESTRATION}
