"""Dispatching: claim ready steps (state first) and send them to their namespace's workers.

Not an actor: the enqueuer and the result processor each dispatch inside their own
transaction, so a result, the transitions it causes and the messages for the steps it
made ready commit together (one commit per hop instead of two).

On a transactional broker (PGMQ) the send commits with the claim. Otherwise the publish
follows the commit, and a step whose publish was lost stays `enqueued` until the sweeper
resends it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from uuid import UUID

import msgspec

from tasker.messaging.broker import Broker, Delivery
from tasker.messaging.messages import HandlerSpec, StepMessage, encode, worker_queue
from tasker.state.db import UnitOfWork
from tasker.state.dispatch import DispatchStep, claim_for_dispatch
from tasker.state.records import ClaimedStep, Dispatch
from tasker.state.repository import RegisteredTemplate, StateRepository
from tasker.telemetry import metrics
from tasker.telemetry.hooks import inject, traced, within_task

log = logging.getLogger(__name__)

#: Steps claimed per statement at most (more are claimed in slices).
MAX_CLAIM = 500


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


class TemplateCatalog:
    """Registered templates by identity, read from the database once per process."""

    def __init__(self, repository: StateRepository) -> None:
        self._repository = repository
        self._cache: dict[tuple[str, str, str], RegisteredTemplate] = {}

    def get(self, namespace: str, name: str, version: str) -> RegisteredTemplate:
        key = (namespace, name, version)
        if key not in self._cache:
            self._cache[key] = self._repository.get_template(namespace, name, version)
        return self._cache[key]


class StepDispatcher:
    """Claims steps in the caller's transaction and sends (or, after commit, publishes) them.

    One per actor: it caches templates and known queues, and is used from one thread.
    """

    def __init__(
        self,
        broker: Broker,
        repository: StateRepository,
        confirmed: Callable[[list[Dispatch]], None] | None = None,
    ) -> None:
        self.broker = broker
        self.repository = repository
        # Records publish confirms (after-commit brokers); by default at once, in a transaction.
        self.confirmed = confirmed or repository.mark_published
        self.catalog = TemplateCatalog(repository)  # for each step's `publishes_events`
        self._events: dict[tuple[str, str, str], dict[str, tuple[Any, ...]]] = {}
        self._known_queues: set[str] = set()

    def dispatch(
        self,
        unit: UnitOfWork,
        step_uuids: Sequence[UUID],
        live: Trace = None,
        traces: Mapping[UUID, Trace] | None = None,
        acking: Sequence[Delivery] = (),
    ) -> list[ClaimedStep]:
        """Claim the given steps still ready and send their messages with the transaction;
        ack `acking` (the deliveries that made them ready) with it too, after the sends.

        A step's message continues `traces[step]`, else `live`, when that is its task's
        trace, and otherwise the trace stored with its task (see `_enqueue_span`).
        """
        transactional = self.broker.transactional
        dispatched: list[DispatchStep] = []
        for start in range(0, len(step_uuids), MAX_CLAIM):
            chunk = step_uuids[start : start + MAX_CLAIM]
            dispatched += claim_for_dispatch(unit, chunk, published=transactional)
        if not dispatched:
            self._ack(acking, unit)
            return []
        bodies = self._by_queue(dispatched, lambda step: (traces or {}).get(step, live))
        if transactional:
            self.send(bodies, within=unit, acking=acking)
        else:
            dispatches = [entry.step.dispatch for entry in dispatched]
            unit.after_commit(lambda: self.publish(bodies, dispatches))
            self._ack(acking, unit)
        claimed = [entry.step for entry in dispatched]
        steps_enqueued(claimed)  # telemetry hook
        log.debug("enqueued %s", ", ".join(f"{s.name}#{s.attempt}" for s in claimed))
        return claimed

    def messages(self, steps: list[DispatchStep]) -> dict[str, list[bytes]]:
        """Encoded step messages by worker queue (for steps claimed earlier)."""
        return self._by_queue(steps, lambda _: None)

    def send(
        self,
        bodies: dict[str, list[bytes]],
        *,
        within: UnitOfWork | None,
        acking: Sequence[Delivery] = (),
    ) -> None:
        """Send each queue's messages; the first send also acks `acking` (one call on PGMQ)."""
        pending = acking
        for queue, messages in bodies.items():
            self._ensure(queue)
            if pending:
                self.broker.send_batch_and_ack(queue, messages, pending, within=within)
                pending = ()
            else:
                self.broker.send_batch(queue, messages, within=within)
        self._ack(pending, within)

    def _ack(self, deliveries: Sequence[Delivery], within: UnitOfWork | None) -> None:
        if deliveries:
            self.broker.ack_many(deliveries, within=within)

    def publish(self, bodies: Mapping[str, list[bytes]], dispatches: list[Dispatch]) -> None:
        """After the claim's commit, on a broker without transactions: publish, then record
        the publish confirms of `dispatches`."""
        try:
            self.send(dict(bodies), within=None)
        except Exception as exc:
            # The claim committed: the sweeper re-publishes steps with no publish confirm.
            log.warning(
                "publish of %d step(s) failed (%s); the sweep resends", len(dispatches), exc
            )
            return
        self.confirmed(dispatches)

    def _by_queue(
        self, steps: list[DispatchStep], live: Callable[[UUID], Trace]
    ) -> dict[str, list[bytes]]:
        grouped: dict[str, list[bytes]] = defaultdict(list)
        for entries in _by_task(steps):
            with _enqueue_span(entries, live(entries[0].step.step_uuid)):  # telemetry hook
                for entry in entries:
                    step = entry.step
                    message = step_message(
                        step,
                        self._events_of(step),
                        inputs=entry.inputs,
                        checkpoint=entry.checkpoint,
                    )
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
    """The claimed steps grouped by task (one claim may cover many tasks)."""
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
