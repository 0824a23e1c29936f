"""Drive the state layer as the orchestrator does, without actors or a broker.

`Engine.report` takes the path of `ResultProcessor._process_together` (the plain-step
call, else inspect -> apply or checkpoint -> follow_up, one transaction); `Engine.claim`
the path of the enqueuer (`claim_for_dispatch`). Tests then read the task back and
assert on steps and states.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from tasker.state.db import UnitOfWork
from tasker.state.dispatch import DispatchStep, claim_for_dispatch
from tasker.state.dynamic import DynamicSteps
from tasker.state.records import ClaimedStep, ResultOutcome
from tasker.state.repository import RegisteredTemplate, StateRepository, TaskSpec
from tasker.state.templates import TaskTemplate, load_template_text


@dataclass
class Engine:
    repository: StateRepository
    dynamic: DynamicSteps = field(init=False)
    ready: list[UUID] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dynamic = DynamicSteps(self.repository)

    def register(self, yaml_text: str) -> RegisteredTemplate:
        version = f"1.0.{uuid.uuid4().int % 10**6}"  # each test its own template version
        template = load_template_text(yaml_text.replace("VERSION", version))
        return RegisteredTemplate(self.repository.register_template(template), template)

    def register_template(self, template: TaskTemplate) -> RegisteredTemplate:
        return RegisteredTemplate(self.repository.register_template(template), template)

    def create(self, registered: RegisteredTemplate, **context: Any) -> UUID:
        task_uuid = uuid.uuid4()
        with self.repository.database.transaction() as unit:
            created = self.repository.create_task(
                unit, registered, TaskSpec(task_uuid=task_uuid, context=context)
            )
        self.ready = list(created.ready_steps)  # one task at a time: forget earlier ones
        return task_uuid

    def claim(self) -> dict[str, DispatchStep]:
        """Claim everything announced ready so far; the claimed steps by name."""
        with self.repository.database.transaction() as unit:
            claimed = claim_for_dispatch(unit, self.ready, published=True)
        self.ready = []
        return {entry.step.name: entry for entry in claimed}

    def report(
        self,
        entry: DispatchStep,
        result: Any = None,
        *,
        error: dict[str, Any] | None = None,
        checkpoint: dict[str, Any] | None = None,
    ) -> ResultOutcome:
        """Report one attempt: success with `result`, a failure `error`, or a checkpoint."""
        with self.repository.database.transaction() as unit:
            outcome = self._apply(unit, entry.step, result, error, checkpoint)
        self.ready.extend(outcome.ready_steps)
        if outcome.finalize and outcome.task_uuid is not None:
            with self.repository.database.transaction() as unit:
                self.repository.finalize_task(unit, outcome.task_uuid)
        return outcome

    def _apply(
        self,
        unit: UnitOfWork,
        step: ClaimedStep,
        result: Any,
        error: dict[str, Any] | None,
        checkpoint: dict[str, Any] | None,
    ) -> ResultOutcome:
        now = datetime.now(UTC)
        attempt: dict[str, Any] = dict(
            step_uuid=step.step_uuid, fence=step.fence, started_at=now, finished_at=now,
            worker_id="test",
        )  # fmt: skip
        if checkpoint is not None:
            kind = self.dynamic.inspect(unit, step.step_uuid, success=False, result=result)
            outcome = self.dynamic.checkpoint(unit, checkpoint=checkpoint, **attempt)
            return self.dynamic.follow_up(unit, kind, outcome)
        plain = self.repository.apply_plain_step_result(  # one call for a plain step
            unit, success=error is None, result=result, error=error, **attempt
        )
        if plain is not None:
            return plain
        kind = self.dynamic.inspect(unit, step.step_uuid, success=error is None, result=result)
        outcome = self.repository.apply_step_result(
            unit,
            success=error is None and kind.problem is None,
            result=result,
            error=kind.failure() if kind.problem else error,
            **attempt,
        )
        return self.dynamic.follow_up(unit, kind, outcome)

    def steps(self, task_uuid: UUID) -> dict[str, Any]:
        """Every step of the task by name: (state, results, parents)."""
        view = self.repository.get_task(task_uuid)
        return {s.name: s for s in view.steps}

    def status(self, task_uuid: UUID) -> str:
        return self.repository.get_task(task_uuid).status


def permanent(message: str = "boom") -> dict[str, Any]:
    return {"message": message, "error_type": "permanent_error", "retryable": False}
