"""Enqueueing: claim ready steps (state first) and send them to their namespace's workers.

On a transactional broker (PGMQ) the send commits with the claim. Otherwise it follows
the commit, and a step whose publish was lost stays `enqueued` until the sweeper resends it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from uuid import UUID

import msgspec

from tasker.actors.guarded import GuardedActor
from tasker.actors.messages import EnqueueSteps, RepublishUnconfirmed
from tasker.actors.task_initializer import TemplateCatalog
from tasker.messaging.broker import Broker
from tasker.messaging.messages import HandlerSpec, StepMessage, encode, worker_queue
from tasker.state.db import Database, UnitOfWork
from tasker.state.dispatch import DispatchStep, claim_for_dispatch, with_inputs
from tasker.state.records import ClaimedStep
from tasker.state.repository import StateRepository
from tasker.telemetry import metrics
from tasker.telemetry.hooks import inject, traced, within_task

log = logging.getLogger(__name__)


def step_message(
    step: ClaimedStep,
    events: tuple[Any, ...] = (),
    *,
    inputs: dict[str, Any] | None = None,
    checkpoint: dict[str, Any] | None = None,
) -> StepMessage:
    """The message a worker needs to run one attempt of a claimed step.

    `inputs` (a batch worker's cursor) and `checkpoint` are the step's own (issue 10).
    """
    return StepMessage(
        task_uuid=step.task_uuid,
        step_uuid=step.step_uuid,
        namespace=step.namespace,
        task_name=step.task_name,
        task_version=step.task_version,
        step_name=step.name,
        handler=msgspec.convert(step.handler, HandlerSpec),
        attempt=step.attempt,
        max_attempts=step.max_attempts,
        retryable=step.retryable,
        input_data=step.context,
        dependency_results=step.dependency_results,
        timeout_seconds=step.timeout_seconds,
        correlation_id=step.correlation_id,
        fence=step.fence,
        trace_context=inject(),  # continues the current trace to the worker (telemetry)
        publishes_events=list(events),
        step_inputs=inputs or {},
        checkpoint=checkpoint,
    )


#: Steps claimed per transaction at most (a flush of more is split).
_MAX_CLAIM = 500


class _Flush(msgspec.Struct, frozen=True):
    """Claim everything collected so far (the enqueuer tells itself this)."""

    trace_context: dict[str, str] = msgspec.field(default_factory=dict)


class StepEnqueuer(GuardedActor):
    def __init__(self, broker: Broker, database: Database, repository: StateRepository) -> None:
        super().__init__(broker)
        self.database = database
        self.repository = repository
        self._known_queues: set[str] = set()
        self._events: dict[tuple[str, str, str], dict[str, tuple[Any, ...]]] = {}
        self.catalog = TemplateCatalog(repository)  # for each step's `publishes_events`
        self._pending: dict[UUID, None] = {}  # ordered set of steps awaiting the next flush

    def handlers(self) -> dict[type[Any], Callable[[Any], Any]]:
        return {
            EnqueueSteps: self.collect,
            _Flush: self.flush,
            RepublishUnconfirmed: self.republish,
        }

    def collect(self, message: EnqueueSteps) -> None:
        """Gather steps to claim; the claim happens at the next flush.

        The flush message queues behind every EnqueueSteps already waiting, so under load
        one claim (one transaction) covers them all; when idle it follows at once.
        """
        if not self._pending:
            self.actor_ref.tell(_Flush(message.trace_context))
        self._pending.update(dict.fromkeys(message.step_uuids))

    def flush(self, message: _Flush) -> None:
        steps, self._pending = tuple(self._pending), {}
        for start in range(0, len(steps), _MAX_CLAIM):
            self.enqueue(EnqueueSteps(steps[start : start + _MAX_CLAIM], message.trace_context))

    def enqueue(self, message: EnqueueSteps) -> None:
        transactional = self.broker.transactional
        with self.database.transaction() as unit:
            # Dynamic steps (issue 10): batch parallelism, inputs and checkpoints.
            dispatched = claim_for_dispatch(unit, message.step_uuids, published=transactional)
            self._send(dispatched, within=unit, live=message.trace_context)
        claimed = [entry.step for entry in dispatched]
        steps_enqueued(claimed)  # telemetry hook
        # Here the transaction has committed and any after-commit publish is confirmed.
        if claimed and not transactional:
            self.repository.mark_published([step.step_uuid for step in claimed])
        if claimed:
            log.debug("enqueued %s", ", ".join(f"{s.name}#{s.attempt}" for s in claimed))

    def republish(self, message: RepublishUnconfirmed) -> None:
        """Resend steps whose publish may have been lost (crash between commit and confirm)."""
        stale = self.repository.take_unpublished_steps(message.older_than)
        if not stale:
            return
        log.warning("re-publishing %d step(s) with no publish confirm", len(stale))
        self._send(with_inputs(self.database, stale), within=None)
        self.repository.mark_published([step.step_uuid for step in stale])

    def _send(
        self, steps: list[DispatchStep], *, within: UnitOfWork | None, live: Trace = None
    ) -> None:
        for queue, bodies in self._by_queue(steps, live).items():
            self._ensure(queue)
            self.broker.send_batch(queue, bodies, within=within)

    def _by_queue(self, claimed: list[DispatchStep], live: Trace) -> dict[str, list[bytes]]:
        grouped: dict[str, list[bytes]] = defaultdict(list)
        for entries in _by_task(claimed):
            with _enqueue_span(entries, live):  # telemetry hook: the messages continue it
                for entry in entries:
                    step = entry.step
                    message = step_message(
                        step, self._events_of(step), inputs=entry.inputs,
                        checkpoint=entry.checkpoint,
                    )  # fmt: skip
                    grouped[worker_queue(step.namespace)].append(encode(message))
        return grouped

    def _events_of(self, step: ClaimedStep) -> tuple[Any, ...]:
        """The domain events the step's template declares (none for generated steps)."""
        key = (step.namespace, step.task_name, step.task_version)
        if key not in self._events:
            template = self.catalog.get(*key).template
            # Indexed once per template: a scan per step is quadratic for large templates.
            self._events[key] = {s.name: s.publishes_events for s in template.steps}
        return self._events[key].get(step.name, ())

    def _ensure(self, queue: str) -> None:
        if queue not in self._known_queues:
            self.broker.ensure_queue(queue)
            self._known_queues.add(queue)


def steps_enqueued(claimed: list[ClaimedStep]) -> None:
    """Count enqueued steps per namespace (telemetry hook)."""
    for namespace in {step.namespace for step in claimed}:
        metrics.steps_enqueued(namespace, sum(s.namespace == namespace for s in claimed))


Trace = Mapping[str, str] | None


def _by_task(claimed: list[DispatchStep]) -> Iterable[list[DispatchStep]]:
    """The claimed steps grouped by task (a flush may cover many tasks)."""
    tasks: dict[UUID, list[DispatchStep]] = defaultdict(list)
    for entry in claimed:
        tasks[entry.step.task_uuid].append(entry)
    return tasks.values()


def _enqueue_span(entries: list[DispatchStep], live: Trace) -> Any:
    """The span of one task's enqueueing, in that task's trace (telemetry hook): the live
    context when it is the task's, else the one stored with the task (retries, sweeps)."""
    first = entries[0]
    return traced(
        "tasker.steps.enqueue",
        within_task(live, first.trace_context),
        task_uuid=first.step.task_uuid,
        namespace=first.step.namespace,
        steps=len(entries),
    )
