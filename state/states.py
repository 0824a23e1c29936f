"""Tasker's task and step state machines: the states and every allowed transition.

This table is the single statement of the rules; the SQL functions in `state/sql/` perform
only transitions listed here (a unit test checks the paths they take).
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    PENDING = "pending"
    INITIALIZING = "initializing"
    ENQUEUING_STEPS = "enqueuing_steps"
    STEPS_IN_PROCESS = "steps_in_process"
    EVALUATING_RESULTS = "evaluating_results"
    WAITING_FOR_DEPENDENCIES = "waiting_for_dependencies"
    WAITING_FOR_RETRY = "waiting_for_retry"
    BLOCKED_BY_FAILURES = "blocked_by_failures"
    COMPLETE = "complete"
    ERROR = "error"
    CANCELLED = "cancelled"
    RESOLVED_MANUALLY = "resolved_manually"


class StepState(StrEnum):
    PENDING = "pending"
    ENQUEUED = "enqueued"
    IN_PROGRESS = "in_progress"
    ENQUEUED_FOR_ORCHESTRATION = "enqueued_for_orchestration"
    ENQUEUED_AS_ERROR_FOR_ORCHESTRATION = "enqueued_as_error_for_orchestration"
    WAITING_FOR_RETRY = "waiting_for_retry"
    COMPLETE = "complete"
    ERROR = "error"
    CANCELLED = "cancelled"
    RESOLVED_MANUALLY = "resolved_manually"


TERMINAL_TASK_STATES = frozenset(
    {TaskState.COMPLETE, TaskState.ERROR, TaskState.CANCELLED, TaskState.RESOLVED_MANUALLY}
)
TERMINAL_STEP_STATES = frozenset(
    {StepState.COMPLETE, StepState.ERROR, StepState.CANCELLED, StepState.RESOLVED_MANUALLY}
)
#: States of a parent that let its children run.
SATISFYING_STEP_STATES = frozenset({StepState.COMPLETE, StepState.RESOLVED_MANUALLY})

_T = TaskState
_ACTIVE_TASK_STATES = (
    _T.ENQUEUING_STEPS,
    _T.STEPS_IN_PROCESS,
    _T.EVALUATING_RESULTS,
    _T.WAITING_FOR_DEPENDENCIES,
    _T.WAITING_FOR_RETRY,
    _T.BLOCKED_BY_FAILURES,
)

TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    _T.PENDING: frozenset({_T.INITIALIZING, _T.CANCELLED}),
    _T.INITIALIZING: frozenset(
        {_T.ENQUEUING_STEPS, _T.WAITING_FOR_DEPENDENCIES, _T.COMPLETE, _T.ERROR, _T.CANCELLED}
    ),
    _T.ENQUEUING_STEPS: frozenset(
        {_T.STEPS_IN_PROCESS, _T.EVALUATING_RESULTS, _T.ERROR, _T.CANCELLED}
    ),
    _T.STEPS_IN_PROCESS: frozenset({_T.EVALUATING_RESULTS, _T.ERROR, _T.CANCELLED}),
    _T.EVALUATING_RESULTS: frozenset(
        {
            _T.ENQUEUING_STEPS,
            _T.STEPS_IN_PROCESS,
            _T.WAITING_FOR_DEPENDENCIES,
            _T.WAITING_FOR_RETRY,
            _T.BLOCKED_BY_FAILURES,
            _T.COMPLETE,
            _T.ERROR,
            _T.CANCELLED,
        }
    ),
    _T.WAITING_FOR_DEPENDENCIES: frozenset(
        {_T.EVALUATING_RESULTS, _T.ENQUEUING_STEPS, _T.ERROR, _T.CANCELLED}
    ),
    _T.WAITING_FOR_RETRY: frozenset(
        {_T.EVALUATING_RESULTS, _T.ENQUEUING_STEPS, _T.ERROR, _T.CANCELLED}
    ),
    _T.BLOCKED_BY_FAILURES: frozenset(
        {_T.EVALUATING_RESULTS, _T.ERROR, _T.RESOLVED_MANUALLY, _T.CANCELLED}
    ),
    # Operators may revive an errored task after fixing its steps.
    _T.ERROR: frozenset({_T.EVALUATING_RESULTS, _T.RESOLVED_MANUALLY}),
    _T.COMPLETE: frozenset(),
    _T.CANCELLED: frozenset(),
    _T.RESOLVED_MANUALLY: frozenset(),
}

_S = StepState
STEP_TRANSITIONS: dict[StepState, frozenset[StepState]] = {
    _S.PENDING: frozenset({_S.ENQUEUED, _S.CANCELLED, _S.RESOLVED_MANUALLY, _S.COMPLETE}),
    _S.ENQUEUED: frozenset(
        {_S.IN_PROGRESS, _S.PENDING, _S.CANCELLED, _S.RESOLVED_MANUALLY, _S.ERROR}
    ),
    _S.IN_PROGRESS: frozenset(
        {
            _S.ENQUEUED_FOR_ORCHESTRATION,
            _S.ENQUEUED_AS_ERROR_FOR_ORCHESTRATION,
            _S.PENDING,
            _S.CANCELLED,
            _S.RESOLVED_MANUALLY,
            _S.ERROR,
        }
    ),
    _S.ENQUEUED_FOR_ORCHESTRATION: frozenset({_S.COMPLETE, _S.ERROR, _S.CANCELLED}),
    _S.ENQUEUED_AS_ERROR_FOR_ORCHESTRATION: frozenset(
        {_S.WAITING_FOR_RETRY, _S.ERROR, _S.CANCELLED}
    ),
    _S.WAITING_FOR_RETRY: frozenset(
        {_S.ENQUEUED, _S.PENDING, _S.CANCELLED, _S.RESOLVED_MANUALLY, _S.ERROR}
    ),
    # Operator actions: reset_for_retry (-> pending), resolve_manually, complete_manually.
    _S.ERROR: frozenset({_S.PENDING, _S.RESOLVED_MANUALLY, _S.COMPLETE}),
    _S.COMPLETE: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.RESOLVED_MANUALLY: frozenset(),
}


def task_transition_allowed(current: TaskState, target: TaskState) -> bool:
    return target in TASK_TRANSITIONS[current]


def step_transition_allowed(current: StepState, target: StepState) -> bool:
    return target in STEP_TRANSITIONS[current]


def step_sources(target: StepState) -> frozenset[StepState]:
    """Every state a step may move to `target` from."""
    return frozenset(s for s, targets in STEP_TRANSITIONS.items() if target in targets)


def task_sources(target: TaskState) -> frozenset[TaskState]:
    """Every state a task may move to `target` from."""
    return frozenset(s for s, targets in TASK_TRANSITIONS.items() if target in targets)
