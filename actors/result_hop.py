"""The result hop in one statement.

Applying results, claiming the steps they made ready, building those steps' messages and
finishing the tasks they finished is one server call (migration 0012), where the general
path makes five round trips and builds the messages in Python. On PGMQ, whose queues are
tables of that database, the call also sends the messages and deletes the results; on
another broker the messages are published and the results acked after it, as the general
path does after its commit. Results the call leaves alone (decisions, batches, batch
workers) and results of a call that failed take the general path.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

import msgspec
from opentelemetry.trace import Span

from tasker.actors.messages import StepResultReceived
from tasker.actors.step_dispatch import StepDispatcher
from tasker.actors.task_finalizer import announce
from tasker.messaging.broker import Broker
from tasker.messaging.messages import StepResultMessage, worker_queue
from tasker.state.records import Dispatch, HopOutcome, ResultInput, ResultOutcome
from tasker.state.repository import StateRepository
from tasker.telemetry import metrics
from tasker.telemetry.hooks import traced
from tasker.telemetry.tracing import carrier_of, start_span

log = logging.getLogger(__name__)

AfterCommit = Callable[[StepResultMessage, ResultOutcome, float], None]


class OneCallHop:
    """Carries out the hop of plain steps' results in one call (used by one thread)."""

    def __init__(
        self,
        broker: Broker,
        repository: StateRepository,
        dispatcher: StepDispatcher,
        after: AfterCommit,
    ) -> None:
        self.broker = broker
        self.repository = repository
        self.dispatcher = dispatcher  # publishes (and records confirms) off PGMQ
        self.after = after

    def process(self, items: Sequence[StepResultReceived]) -> list[StepResultReceived]:
        """Apply `items` (in lock order) in one call; return those left to the general path:
        all of them when the call failed."""
        deliveries = [item.delivery for item in items]
        found = self.broker.database_message_ids(deliveries)
        if self.broker.transactional and found is None:
            return list(items)
        queue: str | None = None
        message_ids: list[int | None] = [None] * len(items)
        if found is not None:
            queue, message_ids = found[0], list(found[1])
        spans = [_result_span(item.result) for item in items]
        # The steps a result makes ready are enqueued in a span of their own, as on the
        # general path: result -> enqueue -> the worker's execution.
        enqueues = [
            start_span("tasker.steps.enqueue", carrier_of(span), task_uuid=item.result.task_uuid)
            for item, span in zip(items, spans, strict=True)
        ]
        inputs = [
            _input(item.result, message_id, carrier_of(enqueue))
            for item, message_id, enqueue in zip(items, message_ids, enqueues, strict=True)
        ]
        started, started_ns = time.perf_counter(), time.time_ns()
        try:
            outcomes = self.repository.apply_results_and_dispatch(queue, inputs)
        except Exception as exc:
            for span in (*enqueues, *spans):
                span.end()
            log.warning("results hop in one call failed (%s); taking the general path", exc)
            return list(items)
        elapsed = time.perf_counter() - started
        if queue is None:
            self._publish_and_ack(items, outcomes)
        left = []
        for item, span, enqueue, hop in zip(items, spans, enqueues, outcomes, strict=True):
            if hop.outcome.outcome == "dynamic":
                # Left to the general path, which traces it: these spans are never ended,
                # so never exported (one result, one `tasker.step.result` span).
                left.append(item)
                continue
            enqueue.set_attribute("tasker.steps", hop.sent)
            enqueue.end()
            self._followed(item.result, hop, elapsed, carrier_of(span), started_ns)
            span.end()
        return left

    def _publish_and_ack(
        self, items: Sequence[StepResultReceived], outcomes: list[HopOutcome]
    ) -> None:
        """Off PGMQ, after the call committed: publish the claimed steps' messages (a lost
        publish is resent by the sweep), then ack the results the call applied."""
        bodies: dict[str, list[bytes]] = defaultdict(list)
        dispatches: list[Dispatch] = []
        for hop in outcomes:
            if hop.messages and hop.namespace is not None:
                bodies[worker_queue(hop.namespace)] += [m.encode() for m in hop.messages]
                dispatches += hop.dispatches
        if bodies:
            self.dispatcher.publish(bodies, dispatches)
        done = [
            item.delivery
            for item, hop in zip(items, outcomes, strict=True)
            if hop.outcome.outcome != "dynamic"
        ]
        if done:
            self.broker.ack_many(done)

    def _followed(
        self,
        result: StepResultMessage,
        hop: HopOutcome,
        elapsed: float,
        trace: dict[str, str],
        started_ns: int,
    ) -> None:
        """What follows a committed hop: metrics, logs, retry timers (telemetry hooks)."""
        self.after(result, hop.outcome, elapsed)
        if hop.sent and hop.namespace is not None:
            metrics.steps_enqueued(hop.namespace, hop.sent)
        finalization = hop.finalization
        if finalization is not None:
            task = finalization.task_uuid
            start_span("tasker.task.finalize", trace, start_time=started_ns, task_uuid=task).end()
            with traced("tasker.task.finished", trace, task_uuid=task):
                announce(finalization)


def _result_span(result: StepResultMessage) -> Span:
    """The span of applying one result, continuing the worker's trace (telemetry hook)."""
    return start_span(
        "tasker.step.result",
        result.trace_context,
        task_uuid=result.task_uuid,
        step_uuid=result.step_uuid,
        correlation_id=result.correlation_id,
    )


def _input(result: StepResultMessage, message_id: int | None, trace: dict[str, str]) -> ResultInput:
    return ResultInput(
        message_id=message_id,
        step_uuid=result.step_uuid,
        fence=result.fence or result.attempt,
        success=result.status == "success",
        result=result.result,
        error=msgspec.to_builtins(result.error) if result.error is not None else None,
        started_at=result.started_at,
        finished_at=result.finished_at,
        worker_id=result.worker_id,
        trace_context=trace,
    )
