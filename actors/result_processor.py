"""Result processing: apply a worker's report once, then say what happens next.

The state change and the ack of the result message share one transaction where the broker
allows it; a redelivered result finds its attempt already applied and changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pykka

from tasker.actors.guarded import GuardedActor
from tasker.actors.messages import EnqueueSteps, FinalizeTask, RetryDue, StepResultReceived
from tasker.actors.poison import Quarantine
from tasker.messaging.broker import Broker
from tasker.messaging.messages import StepResultMessage
from tasker.state.db import Database, UnitOfWork
from tasker.state.dynamic import DynamicSteps, StepKind
from tasker.state.records import ResultOutcome
from tasker.state.repository import StateRepository
from tasker.telemetry import metrics
from tasker.telemetry.hooks import inject, traced

log = logging.getLogger(__name__)

#: A batch worker's checkpoint yield: a failure-status report carrying this metadata key
#: (an orchestrator that predates checkpoints treats it as a retryable failure).
CHECKPOINT_MARKER = "checkpoint_yield"


class ResultProcessor(GuardedActor):
    def __init__(
        self,
        broker: Broker,
        database: Database,
        repository: StateRepository,
        *,
        enqueuer: pykka.ActorRef[Any],
        finalizer: pykka.ActorRef[Any],
        discovery: pykka.ActorRef[Any],
        quarantine: Quarantine | None = None,
    ) -> None:
        super().__init__(broker, quarantine=quarantine)
        self.database = database
        self.repository = repository
        self.enqueuer = enqueuer
        self.finalizer = finalizer
        self.discovery = discovery
        self.dynamic = DynamicSteps(repository)  # decisions, batches, checkpoints (issue 10)

    def handlers(self) -> dict[type[Any], Callable[[Any], Any]]:
        return {StepResultReceived: self.process}

    def process(self, message: StepResultReceived) -> None:
        result = message.result
        with traced(  # telemetry hook: continues the worker's trace
            "tasker.step.result",
            result.trace_context,
            task_uuid=result.task_uuid,
            step_uuid=result.step_uuid,
            correlation_id=result.correlation_id,
        ):
            self._process(message)

    def _process(self, message: StepResultReceived) -> None:
        result = message.result
        started = time.perf_counter()
        with self.database.transaction() as unit:
            # Dynamic steps (issue 10): a decision or batch outcome is checked before the
            # result is applied and carried out after it, in this one transaction.
            kind = self.dynamic.inspect(
                unit, result.step_uuid, success=result.status == "success", result=result.result
            )
            outcome = self._apply(unit, result, kind)
            outcome = self.dynamic.follow_up(unit, kind, outcome)
            self.broker.ack(message.delivery, within=unit)
        if outcome.outcome == "applied":  # telemetry hook
            elapsed = time.perf_counter() - started
            metrics.step_result(outcome.step_state, result.started_at, result.finished_at, elapsed)
        self._follow_up(result.step_uuid, outcome)

    def _apply(self, unit: UnitOfWork, result: StepResultMessage, kind: StepKind) -> ResultOutcome:
        """Apply the attempt's outcome: a checkpoint yield, a bad outcome, or as reported."""
        fence = result.fence or result.attempt
        yielded = result.metadata.get(CHECKPOINT_MARKER) if result.status == "failure" else None
        if isinstance(yielded, dict):
            return self.dynamic.checkpoint(
                unit,
                step_uuid=result.step_uuid,
                fence=fence,
                checkpoint=yielded,
                started_at=result.started_at,
                finished_at=result.finished_at,
                worker_id=result.worker_id,
            )
        error = msgspec.to_builtins(result.error) if result.error is not None else None
        success = result.status == "success" and kind.problem is None
        return self.repository.apply_step_result(
            unit,
            step_uuid=result.step_uuid,
            fence=fence,
            success=success,
            result=result.result,
            error=kind.failure() if kind.problem is not None else error,
            started_at=result.started_at,
            finished_at=result.finished_at,
            worker_id=result.worker_id,
        )

    def _follow_up(self, step_uuid: object, outcome: ResultOutcome) -> None:
        if outcome.outcome not in ("applied", "checkpointed"):
            log.info(
                "result for step %s ignored: %s (state %s)",
                step_uuid,
                outcome.outcome,
                outcome.step_state,
            )
            return
        if outcome.ready_steps:
            self.enqueuer.tell(EnqueueSteps(outcome.ready_steps, trace_context=inject()))
        if outcome.next_retry_at is not None:
            self.discovery.tell(RetryDue(outcome.next_retry_at))
        if outcome.finalize and outcome.task_uuid is not None:
            self.finalizer.tell(FinalizeTask(outcome.task_uuid, trace_context=inject()))
