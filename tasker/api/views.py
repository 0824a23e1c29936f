"""From state records to the API's shapes: derived fields as Tasker reports them."""

from __future__ import annotations

from datetime import UTC, datetime

from tasker.api import schemas
from tasker.state.records import StepView, TaskView, TransitionRecord
from tasker.state.states import SATISFYING_STEP_STATES, TERMINAL_TASK_STATES

_READY_STATES = {"pending", "waiting_for_retry"}


def task(view: TaskView) -> schemas.Task:
    states = {step.name: step.current_state for step in view.steps}
    steps = [step_of(step, states) for step in view.steps]
    ready = sum(step.ready_for_execution for step in steps)
    execution = _execution_status(view, ready)
    return schemas.Task(
        task_uuid=view.task_uuid,
        name=view.name,
        namespace=view.namespace,
        version=view.version,
        status=view.status,
        created_at=view.created_at,
        updated_at=view.updated_at,
        completed_at=view.completed_at,
        context=view.context,
        initiator=view.initiator,
        source_system=view.source_system,
        reason=view.reason,
        priority=view.priority,
        tags=view.tags,
        correlation_id=view.correlation_id,
        parent_correlation_id=None,
        total_steps=view.total_steps,
        pending_steps=view.pending_steps,
        in_progress_steps=view.in_progress_steps,
        completed_steps=view.completed_steps,
        failed_steps=view.failed_steps,
        ready_steps=ready,
        execution_status=execution,
        recommended_action=_RECOMMENDED[execution],
        completion_percentage=round(view.completion_percentage, 1),
        health_status=_HEALTH[execution],
        steps=steps,
    )


def _execution_status(view: TaskView, ready: int) -> str:
    if view.status == "complete" or (view.total_steps and view.completed_steps == view.total_steps):
        return "all_complete"
    if view.status in TERMINAL_TASK_STATES or (view.failed_steps and not view.in_progress_steps):
        return "blocked_by_failures" if view.status != "cancelled" else "cancelled"
    if ready:
        return "has_ready_steps"
    if view.in_progress_steps:
        return "processing"
    return "waiting_for_dependencies"


_RECOMMENDED = {
    "all_complete": "finalize_task",
    "blocked_by_failures": "handle_failures",
    "cancelled": "none",
    "has_ready_steps": "execute_ready_steps",
    "processing": "wait_for_completion",
    "waiting_for_dependencies": "wait_for_dependencies",
}
_HEALTH = {
    "all_complete": "healthy",
    "blocked_by_failures": "blocked",
    "cancelled": "unknown",
    "has_ready_steps": "healthy",
    "processing": "healthy",
    "waiting_for_dependencies": "recovering",
}


def step_of(step: StepView, states: dict[str, str]) -> schemas.Step:
    """A step with its readiness, given the states of its task's steps by name."""
    done = sum(states.get(parent) in SATISFYING_STEP_STATES for parent in step.dependencies)
    satisfied = done == len(step.dependencies)
    retry_eligible = step.retryable and step.attempts < step.max_attempts
    due = step.next_retry_at is None or step.next_retry_at <= datetime.now(UTC)
    ready = (
        step.current_state in _READY_STATES
        and satisfied
        and (step.attempts == 0 or retry_eligible)
        and due
    )
    return schemas.Step(
        step_uuid=step.step_uuid,
        task_uuid=step.task_uuid,
        name=step.name,
        created_at=step.created_at,
        updated_at=step.updated_at,
        completed_at=step.completed_at,
        results=step.results,
        current_state=step.current_state,
        dependencies_satisfied=satisfied,
        retry_eligible=retry_eligible,
        ready_for_execution=ready,
        total_parents=len(step.dependencies),
        completed_parents=done,
        attempts=step.attempts,
        max_attempts=step.max_attempts,
        last_failure_at=step.last_failure_at,
        next_retry_at=step.next_retry_at,
        last_attempted_at=step.last_attempted_at,
        dependencies=step.dependencies,
        retryable=step.retryable,
        last_error=step.last_error,
    )


def transitions(records: list[TransitionRecord]) -> list[schemas.Transition]:
    return [
        schemas.Transition(r.from_state, r.to_state, r.metadata, r.sort_key, r.most_recent,
                           r.created_at)
        for r in records
    ]  # fmt: skip
