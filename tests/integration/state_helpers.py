"""Helpers shared by the state-layer integration tests: templates built in code, raw reads."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from tasker.state.db import Database
from tasker.state.repository import RegisteredTemplate, StateRepository, TaskSpec
from tasker.state.template_model import Backoff
from tasker.state.templates import HandlerDefinition, RetryPolicy, StepDefinition, TaskTemplate

#: What claim_steps would claim for one task, as a read-only query with claim_steps' own
#: conditions (task active and not failed; step pending or due for retry; attempts left;
#: every parent complete or resolved_manually).
READY_STEPS_SQL = """
SELECT s.name
  FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_uuid)
 WHERE s.task_uuid = %s
   AND t.status NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
   AND t.failed_steps = 0
   AND (s.state = 'pending'
        OR (s.state = 'waiting_for_retry' AND s.next_retry_at <= clock_timestamp()))
   AND (s.attempts = 0 OR (s.retryable AND s.attempts < s.max_attempts))
   AND tasker.parents_satisfied(s.step_uuid)
"""


def step_name(index: int) -> str:
    return f"s{index:02d}"


def build_template(
    parents: Sequence[Sequence[int]],
    *,
    retry: Sequence[RetryPolicy] | None = None,
    name: str = "generated",
) -> TaskTemplate:
    """A template whose step `i` depends on the steps `parents[i]` (a unique version)."""
    policies = retry or [RetryPolicy()] * len(parents)
    steps = tuple(
        StepDefinition(
            name=step_name(index),
            handler=HandlerDefinition(callable=f"test.{step_name(index)}"),
            dependencies=tuple(step_name(parent) for parent in sorted(step_parents)),
            retry=policies[index],
        )
        for index, step_parents in enumerate(parents)
    )
    return TaskTemplate(
        name=name, namespace_name="state_tests", version=uuid.uuid4().hex, steps=steps
    )


def retry_policy(
    *, retryable: bool = True, max_attempts: int = 3, backoff: Backoff = "none"
) -> RetryPolicy:
    """A policy whose delays are 0 (`none`) or a minute or more (every other kind)."""
    if backoff == "none":
        return RetryPolicy(retryable, max_attempts, "none", 1_000, 30_000)
    return RetryPolicy(retryable, max_attempts, backoff, 60_000, 600_000)


def register(repository: StateRepository, template: TaskTemplate) -> RegisteredTemplate:
    return RegisteredTemplate(repository.register_template(template), template)


@dataclass(frozen=True)
class CreatedTask:
    task_uuid: UUID
    steps: dict[str, UUID]  # step ids by name


def create_task(
    repository: StateRepository, registered: RegisteredTemplate, **context: Any
) -> CreatedTask:
    """Create a task (in its own transaction) and read back its step ids."""
    task_uuid = uuid.uuid4()
    with repository.database.transaction() as unit:
        repository.create_task(unit, registered, TaskSpec(task_uuid=task_uuid, context=context))
    return CreatedTask(task_uuid, step_ids(repository.database, task_uuid))


def step_ids(database: Database, task_uuid: UUID) -> dict[str, UUID]:
    with database.transaction() as unit:
        rows = unit.execute_sql(
            "SELECT name, step_uuid FROM tasker.workflow_steps WHERE task_uuid = %s",
            (task_uuid,),
        )
    return {row[0]: row[1] for row in rows}


def task_snapshot(database: Database, task_uuid: UUID) -> list[tuple[Any, ...]]:
    """Every column of a task, its steps and the sizes of both histories: for no-op checks."""
    with database.transaction() as unit:
        task = unit.execute_sql("SELECT * FROM tasker.tasks WHERE task_uuid = %s", (task_uuid,))
        steps = unit.execute_sql(
            "SELECT * FROM tasker.workflow_steps WHERE task_uuid = %s ORDER BY position",
            (task_uuid,),
        )
        histories = unit.execute_sql(
            "SELECT (SELECT count(*) FROM tasker.task_transitions WHERE task_uuid = %s),"
            "       (SELECT count(*) FROM tasker.workflow_step_transitions WHERE task_uuid = %s)",
            (task_uuid, task_uuid),
        )
    return task + steps + histories
