"""The worker process: consume namespace queues, run handlers, report results.

A worker needs only the broker: the step message carries everything the handler reads, and
the result goes back as a message, so pools scale out without database connections.

Per namespace, a consumer thread reserves free handler slots and receives at most that many
messages (backpressure: what this worker cannot start stays in the queue for others). Each
step runs on a handler thread; its result is sent with `ack_with_reply`, combined with
results finishing at the same moment into one broker call (`replies.py`). Around that:
- an attempt fence drops a duplicate delivery of an attempt this process runs or ran;
- a heartbeat extends the visibility of every held message, so a live step is never
  redelivered while a dead worker's steps reappear after the visibility timeout;
- a step's `timeout_seconds` is enforced: at the deadline a retryable "timeout" failure is
  reported and the message acked. Python cannot kill a thread, so the handler keeps running
  in the background and its slot stays taken until it returns (its late result is
  discarded); `process_pool=True` runs handlers in child processes instead;
- `stop()` (SIGTERM/SIGINT under `run_worker`) stops receiving, hands back what has not
  started, and lets running handlers finish within `shutdown_grace_seconds`;
- presence heartbeats (`presence.py`) tell the orchestrator this worker is alive, what it
  serves and how busy it is, and finally that it stopped;
- a step of a task the orchestrator announced cancelled (`cancellations.py`) is acked
  without running its handler.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from types import FrameType

from tasker.config import Config, ConfigError
from tasker.events import EventPublisher, settles_step
from tasker.handlers.batch_types import CHECKPOINT_MARKER
from tasker.handlers.cancellations import CancellationListener, CancelledTasks
from tasker.handlers.compat import CompatError, apply_compat
from tasker.handlers.execution import execute_step
from tasker.handlers.fence import AttemptFence, Claim
from tasker.handlers.health_server import WorkerHealth, serve_worker_health
from tasker.handlers.jobs import Job, JobState, JobTable
from tasker.handlers.outcome import result_from_exception
from tasker.handlers.pool import HandlerPool
from tasker.handlers.presence import Presence
from tasker.handlers.process_runner import ProcessRunner
from tasker.handlers.registry import HandlerLoadError, HandlerRegistry
from tasker.handlers.replies import ReplyCombiner
from tasker.handlers.reporting import encode_result, new_worker_id
from tasker.handlers.result import ErrorType, StepHandlerResult
from tasker.handlers.scheduler import Scheduler, TimerHandle
from tasker.handlers.slots import Slots
from tasker.messaging.broker import Broker, Delivery
from tasker.messaging.messages import (
    ORCHESTRATION_RESULTS_QUEUE,
    StepMessage,
    UndecodableMessageError,
    decode,
    worker_queue,
)
from tasker.telemetry.hooks import worker_span

log = logging.getLogger(__name__)

Runner = Callable[[StepMessage], StepHandlerResult]

# Reply attempts before giving a step back to the broker, and the pause between them.
_REPLY_RETRY_DELAYS = (0.1, 0.5, 2.0)
_MAX_BROKER_BACKOFF = 30.0


class Worker:
    """Runs the steps of `config.namespaces` with `config.concurrency` handler threads."""

    def __init__(
        self,
        config: Config,
        broker: Broker,
        *,
        registry: HandlerRegistry | None = None,
        process_pool: bool = False,
        worker_id: str | None = None,
    ) -> None:
        apply_compat(config.compat)
        self.config = config
        self.broker = broker
        self.worker_id = worker_id or new_worker_id()
        self.registry = registry or HandlerRegistry()
        self.registry.load_modules(config.handlers)
        self._process_runner = (
            ProcessRunner(config.concurrency, config.handlers, config.compat)
            if process_pool
            else None
        )
        self._runner: Runner = self._process_runner or partial(execute_step, self.registry)
        self._slots = Slots(config.concurrency)
        self._pool = HandlerPool(config.concurrency)
        self._scheduler = Scheduler()
        self._fence = AttemptFence()
        self._jobs = JobTable()
        self._stopping = threading.Event()
        self._forced = threading.Event()
        self._consumers: list[threading.Thread] = []
        self._exit_code = 0
        self._cancelled = CancelledTasks()
        self._cancellations = CancellationListener(
            broker, self._cancelled, poll=config.poll_interval_seconds, stopping=self._stopping
        )
        self._events = EventPublisher(broker, config.events_queue)
        self._replies = ReplyCombiner(broker, ORCHESTRATION_RESULTS_QUEUE)
        self._presence = Presence(
            broker,
            worker_id=self.worker_id,
            namespaces=config.namespaces,
            concurrency=config.concurrency,
            interval=config.worker_heartbeat_seconds,
            in_flight=lambda: self.in_flight,
        )

    @property
    def in_flight(self) -> int:
        """Steps received and not yet reported or handed back."""
        return len(self._jobs)

    @property
    def cancelled_tasks(self) -> CancelledTasks:
        """The cancelled tasks this worker has heard of."""
        return self._cancelled

    @property
    def skipped_cancelled(self) -> int:
        """Steps acked without running because their task was cancelled."""
        return self._cancelled.skipped

    def stop(self, *, force: bool = False) -> None:
        """Ask the worker to shut down; `force` skips the grace period. Signal-safe."""
        if force:
            self._forced.set()
        self._stopping.set()

    def run(self) -> int:
        """Work until `stop()`, then shut down gracefully; returns the process exit code."""
        self._start()
        self._stopping.wait()
        return self._shutdown()

    # Start and stop

    def _start(self) -> None:
        log.info(
            "worker %s consuming %s with %d handler threads; handlers: %s",
            self.worker_id,
            ", ".join(self.config.namespaces),
            self.config.concurrency,
            ", ".join(self.registry.keys()) or "none registered (import paths only)",
        )
        self._pool.start()
        self._scheduler.start()
        self._presence.start()
        self._cancellations.start()
        self._scheduler.call_every(self.config.visibility_timeout_seconds / 3, self._heartbeat)
        for namespace in self.config.namespaces:
            thread = threading.Thread(
                target=self._consume_guarded,
                args=(worker_queue(namespace),),
                name=f"tasker-consumer-{namespace}",
                daemon=True,
            )
            self._consumers.append(thread)
            thread.start()

    def _shutdown(self) -> int:
        log.info("worker %s stopping: %d steps in flight", self.worker_id, self.in_flight)
        self._presence.stopping()
        self._slots.wake()
        self._safely("wake", self.broker.wake)
        for thread in self._consumers:
            thread.join()
        self._cancellations.join()
        self._hand_back(JobState.QUEUED, "not started")
        if not self._drain():
            self._hand_back(JobState.RUNNING, "still running after the grace period")
        self._scheduler.stop()
        self._pool.shutdown()
        if self._process_runner is not None:
            self._process_runner.shutdown()
        self._presence.stop()
        log.info("worker %s stopped", self.worker_id)
        return self._exit_code

    def _drain(self) -> bool:
        """Wait for running steps to be reported, within the grace period (or until forced)."""
        deadline = time.monotonic() + self.config.shutdown_grace_seconds
        while not self._forced.is_set():
            remaining = deadline - time.monotonic()
            if self._jobs.wait_empty(min(max(remaining, 0.0), 0.1)):
                return True
            if remaining <= 0:
                return False
        return len(self._jobs) == 0

    def _hand_back(self, state: JobState, why: str) -> None:
        """Give jobs in `state` back to the queue at once, for another worker to run."""
        for job in self._jobs.snapshot():
            if job.move(state, JobState.HANDED_BACK):
                log.warning("handing back step %s (%s)", job.message.step_uuid, why)
                self._safely("nack", partial(self.broker.nack, job.delivery, delay=0.0))
                self._fence.release(job.key)
                self._jobs.remove(job)

    # Consuming

    def _consume_guarded(self, queue: str) -> None:
        try:
            self._consume(queue)
        except BaseException:
            # A bug here must end the process visibly (non-zero), never leave it idle.
            log.critical("consumer for %s crashed; stopping the worker", queue, exc_info=True)
            self._exit_code = 1
            self.stop()

    def _consume(self, queue: str) -> None:
        failures = 0
        ready = False
        while not self._stopping.is_set():
            try:
                if not ready:
                    # Idempotent; the results queue too, so a worker started before the
                    # orchestrator can still reply.
                    self.broker.ensure_queue(queue)
                    self.broker.ensure_queue(ORCHESTRATION_RESULTS_QUEUE)
                    ready = True
                self._receive_batch(queue)
                failures = 0
            except Exception as exc:
                failures += 1
                delay = min(0.1 * 2**failures, _MAX_BROKER_BACKOFF)
                log.warning("broker error on %s (retrying in %.1fs): %s", queue, delay, exc)
                self._stopping.wait(delay)

    def _receive_batch(self, queue: str) -> None:
        wait = self.config.poll_interval_seconds
        # At most a fair share of the slots, so every namespace's consumer can poll at once.
        share = -(-self.config.concurrency // len(self.config.namespaces))
        reserved = self._slots.reserve(
            min(self.config.batch_size, share), wait, self._stopping.is_set
        )
        used = 0
        try:
            if reserved:
                deliveries = self.broker.receive(
                    queue,
                    max_messages=reserved,
                    visibility_timeout=self.config.visibility_timeout_seconds,
                    wait=wait,
                )
                used = sum(self._accept(delivery) for delivery in deliveries)
        finally:
            self._slots.release(reserved - used)

    def _accept(self, delivery: Delivery) -> bool:
        """Start a job for `delivery` if it should run; whether it took a slot."""
        message = self._decode(delivery)
        if message is None:
            return False
        if self._stopping.is_set():
            self._safely("nack", lambda: self.broker.nack(delivery, delay=0.0))
            return False
        if self._cancelled.skip(message.task_uuid):
            log.info("skipping step %s: its task %s was cancelled",
                     message.step_uuid, message.task_uuid)  # fmt: skip
            self._safely("ack", lambda: self.broker.ack(delivery))
            return False
        job = Job(delivery, message)
        claim = self._fence.claim(job.key)
        if claim is not Claim.NEW:
            self._drop_duplicate(job, claim)
            return False
        self._jobs.add(job)
        self._pool.submit(partial(self._run_job, job))
        return True

    def _decode(self, delivery: Delivery) -> StepMessage | None:
        """The step message in `delivery`, or None after dead-lettering what is not one."""
        try:
            message = decode(delivery.body)
        except UndecodableMessageError as exc:
            reason = f"undecodable message on {delivery.queue}: {exc}"
        else:
            if isinstance(message, StepMessage):
                return message
            reason = f"expected a step message on {delivery.queue}, got {type(message).__name__}"
        log.error("dead-lettering a message: %s", reason)
        self._safely("dead_letter", lambda: self.broker.dead_letter(delivery, reason))
        return None

    def _drop_duplicate(self, job: Job, claim: Claim) -> None:
        step, attempt = job.key
        if claim is Claim.FINISHED:
            # Already reported from here: the orchestrator has the result.
            log.info("dropping duplicate of finished step %s attempt %d", step, attempt)
            self._safely("ack", lambda: self.broker.ack(job.delivery))
        else:
            # Running here now: keep the copy hidden; if the run is reported, a later
            # redelivery of it is acked; if this process dies, it is still there to retry.
            log.info("deferring duplicate of running step %s attempt %d", step, attempt)
            delay = self.config.visibility_timeout_seconds
            self._safely("nack", lambda: self.broker.nack(job.delivery, delay=delay))

    # Running

    def _run_job(self, job: Job) -> None:
        try:
            if not job.move(JobState.QUEUED, JobState.RUNNING):
                return  # handed back at shutdown before it started
            with worker_span(job.message):  # telemetry hook: the worker's part of the trace
                self._run_and_report(job)
        finally:
            self._slots.release()

    def _run_and_report(self, job: Job) -> None:
        timer = self._arm_timeout(job)
        try:
            result = self._runner(job.message)
        except Exception as exc:  # runners report failures as results; belt and braces
            result = result_from_exception(exc)
        if timer is not None:
            timer.cancel()
        if job.move(JobState.RUNNING, JobState.REPORTED):
            self._report(job, result)
        else:
            log.warning(
                "step %s finished after it was reported (timed out) or handed back; "
                "its result is discarded",
                job.message.step_uuid,
            )

    def _arm_timeout(self, job: Job) -> TimerHandle | None:
        timeout = job.message.timeout_seconds
        if timeout is None or timeout <= 0:
            return None
        return self._scheduler.call_later(timeout, partial(self._on_timeout, job, timeout))

    def _on_timeout(self, job: Job, timeout: float) -> None:
        if not job.move(JobState.RUNNING, JobState.REPORTED):
            return
        message = job.message
        log.warning(
            "step %s (%s) exceeded its timeout of %ss; reporting a retryable timeout",
            message.step_name,
            message.step_uuid,
            timeout,
        )
        failure = StepHandlerResult.failure(
            f"handler {message.handler.callable!r} for step {message.step_name!r} exceeded its "
            f"timeout of {timeout}s; the attempt was abandoned (its thread finishes in the "
            "background and its result is discarded)",
            error_type=ErrorType.TIMEOUT,
            retryable=True,
        )
        # Report off the timer thread: retries there would delay heartbeats and deadlines.
        threading.Thread(target=self._report, args=(job, failure), daemon=True).start()

    def _report(self, job: Job, result: StepHandlerResult) -> None:
        """Send the result and ack the message; on repeated failure give the step back."""
        body = encode_result(
            job.message,
            result,
            started_at=job.started_at,
            finished_at=datetime.now(UTC),
            worker_id=self.worker_id,
        )
        try:
            if self._send_report(job, body) and _settles_step(job.message, result):
                # Domain events follow the reported outcome, outside the report's retries:
                # whatever they do can neither fail the step nor send its result twice.
                payload = result.result if result.is_success else result.error_message
                self._events.after_outcome(job.message, result.is_success, payload)
        finally:
            self._jobs.remove(job)

    def _send_report(self, job: Job, body: bytes) -> bool:
        """Reply with the result and ack the step, retrying; whether it went out."""
        for delay in (*_REPLY_RETRY_DELAYS, None):
            try:
                self._replies.send(job.delivery, body)
                self._fence.finish(job.key)
                return True
            except Exception as exc:
                log.warning("reporting step %s failed: %s", job.message.step_uuid, exc)
                if delay is not None:
                    time.sleep(delay)
        log.error(
            "could not report step %s attempt %d; it will be redelivered after the "
            "visibility timeout and run again",
            job.message.step_uuid,
            job.message.attempt,
        )
        self._fence.release(job.key)
        return False

    # Heartbeat

    def _heartbeat(self) -> None:
        """Keep every held message hidden for another visibility timeout."""
        seconds = self.config.visibility_timeout_seconds
        for job in self._jobs.snapshot():
            if job.state in (JobState.QUEUED, JobState.RUNNING):
                extend = partial(self.broker.extend_visibility, job.delivery, seconds)
                self._safely("extend_visibility", extend)

    @staticmethod
    def _safely(operation: str, action: Callable[[], None]) -> None:
        """Run a broker call whose failure must not stop the worker (the broker redelivers)."""
        try:
            action()
        except Exception as exc:
            log.warning("broker %s failed: %s", operation, exc)


def run_worker(
    config: Config,
    broker: Broker,
    *,
    registry: HandlerRegistry | None = None,
    process_pool: bool = False,
) -> int:
    """Run a worker until SIGTERM/SIGINT (a second signal skips the grace period).

    Returns the exit code: 0 after a graceful stop (also when steps still running at the
    end of the grace period were handed back to the queue), 1 if the worker failed, 2 if it
    could not start (bad handler module or option). The caller owns and closes `broker`.
    """
    try:
        worker = Worker(config, broker, registry=registry, process_pool=process_pool)
    except (HandlerLoadError, CompatError, ConfigError) as exc:
        log.error("worker cannot start: %s", exc)
        return 2
    # --- deploy hook (issue 7): health endpoint for container probes, off unless
    # `worker_health_bind` is set; ready until the worker starts stopping. ---
    health = serve_worker_health(
        config.worker_health_bind,
        WorkerHealth(
            worker_id=worker.worker_id,
            ready=lambda: not worker._stopping.is_set(),
            in_flight=lambda: worker.in_flight,
        ),
    )
    try:
        with _stop_on_signals(worker):
            return worker.run()
    finally:
        if health is not None:
            health.close()
    # --- end deploy hook ---


@contextmanager
def _stop_on_signals(worker: Worker) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled on the main thread
        return
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        worker.stop(force=len(received) > 1)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _settles_step(message: StepMessage, result: StepHandlerResult) -> bool:
    """Whether this attempt's result decides the step (domain events follow only those)."""
    yielded = CHECKPOINT_MARKER in result.metadata
    return settles_step(message, result.is_success, retryable=result.retryable, yielded=yielded)
