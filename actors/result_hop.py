"""The result hop in one statement, where the broker's queues are tables of the database.

On PGMQ, applying results, claiming the steps they made ready, sending those steps'
messages, deleting the results and finishing the tasks they finished is one server call
(migration 0012), where the general path makes five round trips and builds the messages in
Python. Results the call leaves alone (decisions, batches, batch workers) and results of a
call that failed take the general path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import msgspec
from opentelemetry.trace import Span

from tasker.actors.messages import StepResultReceived
from tasker.actors.task_finalizer import announce
from tasker.messaging.broker import Broker
from tasker.messaging.messages import StepResultMessage
from tasker.state.records import HopOutcome, ResultInput, ResultOutcome
from tasker.state.repository import StateRepository
from tasker.telemetry import metrics
from tasker.telemetry.hooks import traced
from tasker.telemetry.tracing import carrier_of, start_span

log = logging.getLogger(__name__)

AfterCommit = Callable[[StepResultMessage, ResultOutcome, float], None]


class OneCallHop:
    """Carries out the hop of plain steps' results in one call (used by one thread)."""

    def __init__(self, broker: Broker, repository: StateRepository, after: AfterCommit) -> None:
        self.broker = broker
        self.repository = repository
        self.after = after

    def process(self, items: Sequence[StepResultReceived]) -> list[StepResultReceived]:
        """Apply `items` (in lock order) in one call; return those left to the general path:
        all of them when the broker's queues are not database tables or the call failed."""
        found = self.broker.database_message_ids([item.delivery for item in items])
        if found is None:
            return list(items)
        queue, message_ids = found
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
        left = []
        for item, span, enqueue, hop in zip(items, spans, enqueues, outcomes, strict=True):
            enqueue.set_attribute("tasker.steps", hop.sent)
            enqueue.end()
            if hop.outcome.outcome == "dynamic":
                left.append(item)
            else:
                self._followed(item.result, hop, elapsed, carrier_of(span), started_ns)
            span.end()
        return left

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


def _input(result: StepResultMessage, message_id: int, trace: dict[str, str]) -> ResultInput:
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
