"""Result processing: apply a worker's report once, and carry out what follows from it.

One transaction applies the result, claims the steps it made ready and sends their
messages (on a transactional broker), finishes the task if it is done, and acks the
result: one commit per hop. Results that arrive together share that transaction. A
redelivered result finds its attempt already applied and changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import msgspec
import pykka

from tasker.actors.guarded import GuardedActor
from tasker.actors.messages import (
    RetryDue,
    StepResultReceived,
    StepResultsReceived,
    StepsPublished,
)
from tasker.actors.poison import Quarantine
from tasker.actors.result_hop import OneCallHop
from tasker.actors.step_dispatch import StepDispatcher
from tasker.actors.task_finalizer import announce
from tasker.messaging.broker import Broker
from tasker.messaging.messages import StepResultMessage
from tasker.state.db import Database, UnitOfWork
from tasker.state.dynamic import DynamicSteps, StepKind
from tasker.state.records import Dispatch, FinalizeOutcome, ResultOutcome
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
        discovery: pykka.ActorRef[Any],
        quarantine: Quarantine | None = None,
    ) -> None:
        super().__init__(broker, quarantine=quarantine)
        self.database = database
        self.repository = repository
        self.discovery = discovery
        self.enqueuer = enqueuer
        self.dynamic = DynamicSteps(repository)  # decisions, batches, checkpoints (issue 10)
        self.dispatcher = StepDispatcher(broker, repository, self._published)
        self.one_call = OneCallHop(broker, repository, self.dispatcher, self._after_commit)

    def handlers(self) -> dict[type[Any], Callable[[Any], Any]]:
        return {StepResultReceived: self.process, StepResultsReceived: self.process_batch}

    def process(self, message: StepResultReceived) -> None:
        self._process_together((message,))

    def process_batch(self, message: StepResultsReceived) -> None:
        """Apply results that arrived together in one transaction; if that fails, one by one.

        A result that fails alone is handed back to the broker; the others still apply.
        """
        if len(message.results) == 1:
            self._process_together(message.results)
            return
        try:
            self._process_together(message.results)
        except Exception:
            log.warning("a batch of %d results failed; applying each alone", len(message.results))
            for item in message.results:
                self.on_receive(item)  # guarded: a failure gives this delivery back

    def _process_together(self, items: Sequence[StepResultReceived]) -> None:
        """Apply each result, dispatch the steps they made ready and finish what they finished,
        acking the results: all in one transaction, so one commit covers the whole hop.
        Plain steps' results take one statement (`OneCallHop`)."""
        ordered = sorted(items, key=lambda item: item.result.task_uuid.bytes)  # lock order
        plain: list[StepResultReceived] = []
        yields: list[StepResultReceived] = []
        for item in ordered:
            (plain if _yielded(item.result) is None else yields).append(item)
        left = self.one_call.process(plain)
        ordered = sorted([*left, *yields], key=lambda item: item.result.task_uuid.bytes)
        if not ordered:
            return
        deliveries = [item.delivery for item in ordered]
        started = time.perf_counter()
        with self.database.transaction() as unit:
            applied = [(item.result, *self._apply_traced(unit, item.result)) for item in ordered]
            traces = {step: trace for _, outcome, trace in applied for step in _ready(outcome)}
            # The results are acked with the messages they cause (one statement on PGMQ).
            self.dispatcher.dispatch(unit, list(traces), traces=traces, acking=deliveries)
            finishing = _to_finish(applied)
            finished = [self._finalize(unit, task, trace) for task, trace in finishing]
        elapsed = time.perf_counter() - started
        for result, outcome, _ in applied:
            self._after_commit(result, outcome, elapsed)
        for (task, trace), finalization in zip(finishing, finished, strict=True):
            # telemetry hook: the log line of a finished task belongs to its trace
            with traced("tasker.task.finished", trace, task_uuid=task):
                announce(finalization)

    def _apply_traced(
        self, unit: UnitOfWork, result: StepResultMessage
    ) -> tuple[ResultOutcome, dict[str, str]]:
        """Apply one result in its own span; the span's context is what its children carry."""
        with traced(  # telemetry hook: continues the worker's trace
            "tasker.step.result",
            result.trace_context,
            task_uuid=result.task_uuid,
            step_uuid=result.step_uuid,
            correlation_id=result.correlation_id,
        ):
            outcome = self._apply(unit, result)  # a plain step's result: one call
            if outcome is None:
                # Dynamic steps (issue 10): a decision or batch outcome is checked before
                # the result is applied and carried out after it, in this one transaction.
                kind = self.dynamic.inspect(
                    unit, result.step_uuid, success=result.status == "success", result=result.result
                )
                applied = self._apply(unit, result, kind)
                assert applied is not None  # with its kind known, a result always applies
                outcome = self.dynamic.follow_up(unit, kind, applied)
            return outcome, inject()

    def _finalize(self, unit: UnitOfWork, task: UUID, trace: dict[str, str]) -> FinalizeOutcome:
        with traced("tasker.task.finalize", trace, task_uuid=task):  # telemetry hook
            return self.repository.finalize_task(unit, task)

    def _published(self, dispatches: list[Dispatch]) -> None:
        """Publish confirms (RabbitMQ) are recorded by the enqueuer, batched, off this thread."""
        self.enqueuer.tell(StepsPublished(tuple(dispatches)))

    def _after_commit(
        self, result: StepResultMessage, outcome: ResultOutcome, elapsed: float
    ) -> None:
        if outcome.outcome == "applied":  # telemetry hook
            metrics.step_result(outcome.step_state, result.started_at, result.finished_at, elapsed)
        if not _changed(outcome):
            log.info(
                "result for step %s ignored: %s (state %s)",
                result.step_uuid,
                outcome.outcome,
                outcome.step_state,
            )
        elif outcome.next_retry_at is not None:
            self.discovery.tell(RetryDue(outcome.next_retry_at))

    def _apply(
        self, unit: UnitOfWork, result: StepResultMessage, kind: StepKind | None = None
    ) -> ResultOutcome | None:
        """Apply the attempt's outcome: a checkpoint yield, a bad outcome, or as reported.

        Without its step's `kind`, only a plain step's result is applied: None means the
        step needs a closer look first (a checkpoint, decision, batch or batch worker).
        """
        fence = result.fence or result.attempt
        yielded = _yielded(result)
        if yielded is not None:
            if kind is None:
                return None
            return self.dynamic.checkpoint(
                unit,
                step_uuid=result.step_uuid,
                fence=fence,
                checkpoint=yielded,
                started_at=result.started_at,
                finished_at=result.finished_at,
                worker_id=result.worker_id,
            )
        problem = kind.failure() if kind is not None and kind.problem is not None else None
        apply = (
            self.repository.apply_plain_step_result
            if kind is None
            else self.repository.apply_step_result
        )
        return apply(
            unit,
            step_uuid=result.step_uuid,
            fence=fence,
            success=result.status == "success" and problem is None,
            result=result.result,
            error=problem or _error(result),
            started_at=result.started_at,
            finished_at=result.finished_at,
            worker_id=result.worker_id,
        )


def _yielded(result: StepResultMessage) -> dict[str, Any] | None:
    """The checkpoint a batch worker yielded with this report, if it is a yield."""
    yielded = result.metadata.get(CHECKPOINT_MARKER) if result.status == "failure" else None
    return yielded if isinstance(yielded, dict) else None


def _error(result: StepResultMessage) -> dict[str, Any] | None:
    return msgspec.to_builtins(result.error) if result.error is not None else None


def _changed(outcome: ResultOutcome) -> bool:
    """Whether the result changed anything (not a duplicate, stale or unknown step)."""
    return outcome.outcome in ("applied", "checkpointed")


def _ready(outcome: ResultOutcome) -> tuple[UUID, ...]:
    return outcome.ready_steps if _changed(outcome) else ()


def _to_finish(
    applied: list[tuple[StepResultMessage, ResultOutcome, dict[str, str]]],
) -> list[tuple[UUID, dict[str, str]]]:
    """Tasks a result may have finished (each once, in lock order), with that result's trace."""
    tasks = {
        outcome.task_uuid: trace
        for _, outcome, trace in applied
        if outcome.finalize and outcome.task_uuid is not None and _changed(outcome)
    }
    return sorted(tasks.items(), key=lambda entry: entry[0].bytes)
