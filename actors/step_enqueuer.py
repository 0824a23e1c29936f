"""Enqueueing of steps found ready outside a result: roots of a new task, due retries,
tasks resumed by the sweep, steps an operator unblocked; and re-publishing lost sends.

Steps a result makes ready are dispatched by the result processor in its own transaction;
this actor serves everything else, claiming whatever has gathered in one transaction.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

import msgspec
import pykka

from tasker.actors.guarded import GuardedActor
from tasker.actors.messages import EnqueueSteps, RepublishUnconfirmed, StepsPublished
from tasker.actors.step_dispatch import StepDispatcher
from tasker.messaging.broker import Broker
from tasker.state.db import Database
from tasker.state.dispatch import with_inputs
from tasker.state.records import Dispatch
from tasker.state.repository import StateRepository
from tasker.telemetry import metrics
from tasker.telemetry.hooks import inject, traced
from tasker.telemetry.tracing import tracing_enabled

log = logging.getLogger(__name__)

#: Publish confirms (RabbitMQ) are recorded this long after the first of a batch, in one
#: transaction for all that came meanwhile: recorded one by one, each cost a transaction
#: per step that competed for the CPU with the next hop. The re-publish sweep, which the
#: record keeps from resending a step, looks only at steps older than a minute.
RECORD_CONFIRMS_AFTER = 0.1


class _Flush(msgspec.Struct, frozen=True):
    """Claim everything collected so far (the enqueuer tells itself this)."""

    trace_context: dict[str, str] = msgspec.field(default_factory=dict)


class _FlushPublished(msgspec.Struct, frozen=True):
    """Record every publish confirm collected so far (the enqueuer tells itself this)."""


class StepEnqueuer(GuardedActor):
    def __init__(self, broker: Broker, database: Database, repository: StateRepository) -> None:
        super().__init__(broker)
        self.database = database
        self.repository = repository
        self.dispatcher = StepDispatcher(broker, repository, self._confirmed)
        self._pending: dict[UUID, None] = {}  # ordered set of steps awaiting the next flush
        self._tasks: set[UUID | None] = set()  # their tasks (None: a sender did not say)
        self._published: set[Dispatch] = set()  # confirmed dispatches awaiting their record
        self._record_timer: threading.Timer | None = None

    def handlers(self) -> dict[type[Any], Callable[[Any], Any]]:
        return {
            EnqueueSteps: self.collect,
            _Flush: self.flush,
            StepsPublished: self.collect_published,
            _FlushPublished: self.flush_published,
            RepublishUnconfirmed: self.republish,
        }

    def collect(self, message: EnqueueSteps) -> None:
        """Gather steps to claim; the claim happens at the next flush.

        With nothing else in the mailbox the flush happens at once. Otherwise it is told,
        and queues behind every EnqueueSteps already waiting, so under load one claim (one
        transaction) covers them all.
        """
        first = not self._pending
        self._pending.update(dict.fromkeys(message.step_uuids))
        self._tasks.add(message.task_uuid)
        if self.actor_inbox.empty():
            self.flush(_Flush(message.trace_context))
        elif first:
            self.actor_ref.tell(_Flush(message.trace_context))

    def flush(self, message: _Flush) -> None:
        steps, self._pending = tuple(self._pending), {}
        tasks, self._tasks = self._tasks, set()
        if steps:
            task = next(iter(tasks)) if len(tasks) == 1 else None
            self.enqueue(EnqueueSteps(steps, message.trace_context, task_uuid=task))

    def enqueue(self, message: EnqueueSteps) -> None:
        if self._in_one_call(message):
            return
        with self.database.transaction() as unit:
            self.dispatcher.dispatch(unit, message.step_uuids, live=message.trace_context)

    def _in_one_call(self, message: EnqueueSteps) -> bool:
        """On PGMQ, one task's steps take one statement (claim, messages built and sent:
        migration 0012); False when the general path must go. Work handed no live trace
        (a retry, a sweep) takes the general path while tracing is on, since only that
        path parents its span in the task's stored trace; with tracing off there is no
        span, and the statement continues the stored trace in the messages all the same."""
        task = message.task_uuid
        if task is None or not self.broker.transactional:
            return False
        if not message.trace_context and tracing_enabled():
            return False
        # telemetry hook: the enqueue span the steps' messages continue
        with traced("tasker.steps.enqueue", message.trace_context, task_uuid=task) as span:
            try:
                sent = self.repository.claim_and_send(message.step_uuids, inject())
            except Exception as exc:
                log.warning("enqueue in one call failed (%s); taking the general path", exc)
                return False
            span.set_attribute("tasker.steps", sum(count for _, count in sent))
        for namespace, count in sent:
            metrics.steps_enqueued(namespace, count)  # telemetry hook
        return True

    def collect_published(self, message: StepsPublished) -> None:
        """Gather publish confirms; one UPDATE records all that arrive within
        `RECORD_CONFIRMS_AFTER` of the first."""
        if not self._published:
            timer = threading.Timer(RECORD_CONFIRMS_AFTER, self._tell_flush_published)
            timer.daemon = True
            timer.start()
            self._record_timer = timer
        self._published.update(message.dispatches)

    def flush_published(self, _: _FlushPublished) -> None:
        dispatches, self._published = list(self._published), set()
        if dispatches:
            self.repository.mark_published(dispatches)

    def on_stop(self) -> None:
        """Record the confirms still gathered (else the sweep would resend their steps)."""
        if self._record_timer is not None:
            self._record_timer.cancel()
        try:
            self.flush_published(_FlushPublished())
        except Exception as exc:
            log.warning("could not record %d publish confirm(s): %s", len(self._published), exc)

    def _tell_flush_published(self) -> None:
        with contextlib.suppress(pykka.ActorDeadError):  # stopped: on_stop recorded them
            self.actor_ref.tell(_FlushPublished())

    def _confirmed(self, dispatches: list[Dispatch]) -> None:
        """Publish confirms of this actor's own sends join the batch (see above)."""
        self.collect_published(StepsPublished(tuple(dispatches)))

    def republish(self, message: RepublishUnconfirmed) -> None:
        """Resend steps whose publish may have been lost (crash between commit and confirm)."""
        stale = self.repository.take_unpublished_steps(message.older_than)
        if not stale:
            return
        log.warning("re-publishing %d step(s) with no publish confirm", len(stale))
        bodies = self.dispatcher.messages(with_inputs(self.database, stale))
        self.dispatcher.send(bodies, within=None)
        self.repository.mark_published([step.dispatch for step in stale])
