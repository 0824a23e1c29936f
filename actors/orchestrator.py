"""The orchestrator process: wires the actors, their inbox pumps and the supervisor."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from concurrent.futures import Future
from queue import Empty, Queue
from typing import Any
from uuid import UUID

import pykka

from tasker.actors import cancellation
from tasker.actors.guarded import HandlingFailed
from tasker.actors.inbox import InboxPump
from tasker.actors.messages import (
    ActorMessage,
    CreateTask,
    EnqueueSteps,
    FinalizeTask,
    StepResultReceived,
    StepResultsReceived,
    TaskRequestReceived,
    WorkerHeartbeatReceived,
)
from tasker.actors.poison import Quarantine
from tasker.actors.result_processor import ResultProcessor
from tasker.actors.step_discovery import StepDiscovery
from tasker.actors.step_enqueuer import StepEnqueuer
from tasker.actors.supervisor import Supervisor
from tasker.actors.task_finalizer import TaskFinalizer
from tasker.actors.task_initializer import TaskAdmission, TaskInitializer
from tasker.actors.worker_registry import WorkerRegistry
from tasker.config import Config
from tasker.messaging.broker import Broker, Delivery
from tasker.messaging.circuit import GuardedBroker, counts_against_broker
from tasker.messaging.messages import (
    ORCHESTRATION_RESULTS_QUEUE,
    ORCHESTRATION_TASK_REQUESTS_QUEUE,
    ORCHESTRATION_WORKER_HEARTBEATS_QUEUE,
    AnyMessage,
    StepResultMessage,
    TaskRequestMessage,
    WorkerHeartbeatMessage,
    worker_queue,
)
from tasker.resilience import circuit_breaker, hold_while_open
from tasker.state.db import Database, counts_against_database
from tasker.state.operations import OperatorOutcome
from tasker.state.poison import PoisonRecords
from tasker.state.repository import StalenessLimits, StateRepository
from tasker.telemetry.hooks import inject

log = logging.getLogger(__name__)

#: Queue depths are read at most this often for backpressure decisions.
_DEPTH_CACHE_SECONDS = 1.0


def _as_task_request(delivery: Delivery, message: AnyMessage) -> ActorMessage | None:
    if isinstance(message, TaskRequestMessage):
        return TaskRequestReceived(delivery, message)
    return None


def _as_step_result(delivery: Delivery, message: AnyMessage) -> ActorMessage | None:
    if isinstance(message, StepResultMessage):
        return StepResultReceived(delivery, message)
    return None


def _results_together(messages: list[ActorMessage]) -> ActorMessage:
    return StepResultsReceived(tuple(m for m in messages if isinstance(m, StepResultReceived)))


def admission_of(reply: Any) -> TaskAdmission:
    """The initializer's reply to CreateTask, or TaskCreationFailedError saying why not."""
    if isinstance(reply, HandlingFailed):
        raise TaskCreationFailedError(reply.reason)
    assert isinstance(reply, TaskAdmission)
    return reply


class TaskCreationFailedError(RuntimeError):
    """Creating a task failed for a reason outside the request (e.g. the database)."""


def _as_worker_heartbeat(delivery: Delivery, message: AnyMessage) -> ActorMessage | None:
    if isinstance(message, WorkerHeartbeatMessage):
        return WorkerHeartbeatReceived(delivery, message)
    return None


_INBOXES = (
    ORCHESTRATION_TASK_REQUESTS_QUEUE,
    ORCHESTRATION_RESULTS_QUEUE,
    ORCHESTRATION_WORKER_HEARTBEATS_QUEUE,
)


class Orchestrator:
    """All orchestration actors of one process; any number may share a database."""

    def __init__(self, config: Config, broker: Broker, database: Database) -> None:
        self.config = config
        self.breakers = {
            "database": circuit_breaker("database", config, counts_against_database),
            "broker": circuit_breaker("broker", config, counts_against_broker),
        }
        self.broker = GuardedBroker(broker, self.breakers["broker"])
        database.breaker = self.breakers["database"]
        self.database = database
        self.repository = StateRepository(database, retry_defaults_from(config))
        self.quarantine = Quarantine(self.broker, PoisonRecords(database))
        self.actors: list[pykka.ActorRef[Any]] = []
        self.pumps: list[InboxPump] = []
        self._deepest = 0
        self._depth_checked_at = float("-inf")

    def start(self) -> Supervisor:
        for queue in _INBOXES:
            self.broker.ensure_queue(queue)
        self._start_actors()
        for pump in self.pumps:
            pump.start()
        return Supervisor(self.actors, self.pumps)

    def _start_actors(self) -> None:
        broker, database, repository = self.broker, self.database, self.repository
        enqueuer = StepEnqueuer.start(broker, database, repository)
        finalizer = TaskFinalizer.start(broker, database, repository)
        discovery = StepDiscovery.start(
            broker,
            repository,
            enqueuer=enqueuer,
            finalizer=finalizer,
            sweep_interval=self.config.sweep_interval_seconds,
            republish_after=self.config.republish_after_seconds,
            staleness=StalenessLimits(
                dependencies_minutes=self.config.stale_waiting_for_dependencies_minutes,
                retry_minutes=self.config.stale_waiting_for_retry_minutes,
                in_process_minutes=self.config.stale_steps_in_process_minutes,
            ),
        )
        results = [
            ResultProcessor.start(
                broker,
                database,
                repository,
                enqueuer=enqueuer,
                discovery=discovery,
                quarantine=self.quarantine,
            )
            for _ in range(self.config.result_processors)
        ]
        initializer = TaskInitializer.start(
            broker, database, repository, enqueuer, max_context_bytes=self.config.max_context_bytes
        )
        self.initializer, self.enqueuer, self.finalizer = initializer, enqueuer, finalizer
        registry = WorkerRegistry.start(
            broker,
            database,
            repository,
            retention_seconds=self.config.worker_retention_hours * 3600,
        )
        self.actors = [enqueuer, finalizer, discovery, *results, initializer, registry]
        self.pumps = [
            self._pump(ORCHESTRATION_TASK_REQUESTS_QUEUE, [initializer], _as_task_request),
            self._pump(ORCHESTRATION_RESULTS_QUEUE, results, _as_step_result, _results_together),
            self._pump(ORCHESTRATION_WORKER_HEARTBEATS_QUEUE, [registry], _as_worker_heartbeat),
        ]

    def _pump(
        self, queue: str, targets: list[pykka.ActorRef[Any]], translate: Any, group: Any = None
    ) -> InboxPump:
        return InboxPump(
            self.broker,
            queue,
            targets,
            translate,
            quarantine=self.quarantine,
            max_in_flight=self.config.batch_size,
            visibility_timeout=self.config.visibility_timeout_seconds,
            wait=self.config.poll_interval_seconds,
            group=group,
            hold=self._hold_while_database_down,
        )

    def _hold_while_database_down(self, stopping: threading.Event) -> None:
        """Every inbox's actor needs the database: while its circuit is open, receiving
        would only hand messages back, each time one delivery closer to the dead letters."""
        hold_while_open(self.breakers["database"], self.database.ping, stopping)

    def create_task(self, request: TaskRequestMessage, timeout: float = 30.0) -> TaskAdmission:
        """Create a task synchronously: the initializer's reply, or why not."""
        try:
            return admission_of(self.submit_task(request).result(timeout))
        except TimeoutError as exc:
            raise TaskCreationFailedError(f"no reply from the initializer in {timeout}s") from exc

    def submit_task(self, request: TaskRequestMessage) -> Future[Any]:
        """Hand a creation request to the initializer; its reply (a TaskAdmission, or
        HandlingFailed: see `admission_of`) completes the future. An event loop awaits it
        with asyncio.wrap_future, woken by the initializer's thread: no thread of its own
        blocks on the reply."""
        reply: Future[Any] = Future()
        # The API's trace continues in the initializer (telemetry hook).
        try:
            self.initializer.tell(CreateTask(request, inject(), reply=reply))
        except pykka.ActorDeadError as exc:
            raise TaskCreationFailedError("the task initializer is not running") from exc
        return reply

    def depth_is_stale(self) -> bool:
        """Whether `backpressure` would read the queues' depth (a query) before answering."""
        return time.monotonic() - self._depth_checked_at > _DEPTH_CACHE_SECONDS

    def backpressure(self) -> int | None:
        """Seconds a client should wait before creating tasks, or None to go ahead.

        New tasks are refused while any step queue is deeper than the configured limit:
        more work would only wait in line and raise everyone's latency.
        """
        now = time.monotonic()
        if self.depth_is_stale():
            self._deepest = max((self._depth(q) for q in self._step_queues()), default=0)
            self._depth_checked_at = now
        if self._deepest > self.config.backpressure_queue_depth:
            return self.config.backpressure_retry_after_seconds
        return None

    def _step_queues(self) -> list[str]:
        namespaces = {namespace for namespace, _, _ in self.repository.list_templates()}
        return [worker_queue(namespace) for namespace in sorted(namespaces)]

    def _depth(self, queue: str) -> int:
        try:
            return self.broker.queue_stats(queue).ready
        except Exception:
            return 0  # a queue not created yet holds nothing

    def after_operator_action(self, outcome: OperatorOutcome) -> None:
        """Carry on a task an operator changed: run what became ready, finalize if done.

        Called inside the operator action's span, which the follow-up work continues."""
        if outcome.ready_steps:
            self.enqueuer.tell(EnqueueSteps(outcome.ready_steps, inject(), outcome.task_uuid))
        if outcome.finalize:
            self.finalizer.tell(FinalizeTask(outcome.task_uuid, inject()))

    def cancel_task(self, task_uuid: UUID, *, actor: str, reason: str) -> OperatorOutcome:
        """Cancel a task and tell the workers to skip its queued steps (for the API)."""
        return cancellation.cancel_task(
            self.database, self.broker, task_uuid, actor=actor, reason=reason
        )

    def stop(self) -> None:
        for pump in self.pumps:
            pump.stop()
        self.broker.wake()
        for pump in self.pumps:
            pump.join(timeout=self.config.poll_interval_seconds + 5)
        for actor in self.actors:
            dropped = _drop_pending_mail(actor)
            if dropped:
                log.info("%s: dropped %d pending message(s) on shutdown",
                         actor.actor_class.__name__, dropped)  # fmt: skip
        for actor in reversed(self.actors):
            actor.stop(block=True, timeout=10)


def _drop_pending_mail(actor: pykka.ActorRef[Any]) -> int:
    """Empty an actor's mailbox so it stops promptly instead of working through a backlog.

    Nothing is lost: an unacked delivery reappears on its queue, and steps or tasks left
    between stages are picked up by the next orchestrator's sweep.
    """
    inbox = actor.actor_inbox
    if not isinstance(inbox, Queue):  # a threading actor's mailbox is a Queue
        return 0
    dropped = 0
    with contextlib.suppress(Empty):
        while True:
            inbox.get_nowait()
            dropped += 1
    return dropped


def retry_defaults_from(config: Config) -> Any:
    from tasker.state.repository import RetryDefaults

    return RetryDefaults(
        max_attempts=config.default_max_attempts,
        backoff=config.default_backoff,
        backoff_base_ms=config.default_backoff_base_ms,
        max_backoff_ms=config.default_max_backoff_ms,
        jitter=config.backoff_jitter,
    )


def run_orchestrator(config: Config, broker: Broker, database: Database) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or until a component dies (non-zero)."""
    orchestrator = Orchestrator(config, broker, database)
    supervisor = orchestrator.start()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: supervisor.request_stop())
    log.info("orchestrator running (broker %s)", config.broker)
    code = supervisor.watch()
    orchestrator.stop()
    log.info("orchestrator stopped (exit %d)", code)
    return code
