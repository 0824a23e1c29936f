"""The worker runtime against the in-memory broker: results, fences, timeouts, shutdown."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from tasker.config import Config
from tasker.handlers import PermanentError, StepContext, StepHandler, StepHandlerResult
from tasker.handlers.registry import HandlerRegistry
from tasker.handlers.worker import Worker, run_worker
from tasker.messaging.broker import BrokerError, Delivery, dead_letter_queue
from tasker.messaging.memory import InMemoryBroker
from tasker.messaging.messages import (
    ORCHESTRATION_RESULTS_QUEUE,
    HandlerSpec,
    StepMessage,
    StepResultMessage,
    decode,
    encode,
    worker_queue,
)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

NS = "orders"
QUEUE = worker_queue(NS)
calls: dict[str, int] = {}
calls_lock = threading.Lock()


def count(key: str) -> None:
    with calls_lock:
        calls[key] = calls.get(key, 0) + 1


class Add(StepHandler):
    handler_name = "add"

    def call(self, context: StepContext) -> StepHandlerResult:
        count(str(context.step_uuid))
        return self.success({"sum": context.get_input("a") + context.get_input("b")}, {"m": 1})


class Decline(StepHandler):
    handler_name = "decline"

    def call(self, context: StepContext) -> StepHandlerResult:
        return self.failure(
            "card declined",
            error_type="payment_error",
            retryable=False,
            error_code="DECLINED",
            metadata={"card": "1234"},
        )


class Explode(StepHandler):
    handler_name = "explode"

    def call(self, context: StepContext) -> StepHandlerResult:
        raise ZeroDivisionError("division by zero in pricing")


class Sleepy(StepHandler):
    """Sleeps `seconds` (task context), counting its calls by step."""

    handler_name = "sleepy"

    def call(self, context: StepContext) -> dict[str, Any]:
        count(str(context.step_uuid))
        time.sleep(context.get_input_or("seconds", 0.2))
        return {"slept": True}


class Forbidden(StepHandler):
    handler_name = "forbidden"

    def call(self, context: StepContext) -> None:
        raise PermanentError("not allowed", error_code="E403")


@pytest.fixture
def broker() -> Iterator[InMemoryBroker]:
    broker = InMemoryBroker(max_deliveries=50)
    broker.ensure_queue(QUEUE)
    broker.ensure_queue(ORCHESTRATION_RESULTS_QUEUE)
    yield broker
    broker.close()


def make_config(**overrides: Any) -> Config:
    settings: dict[str, Any] = {
        "broker": "memory",
        "namespaces": (NS,),
        "concurrency": 4,
        "poll_interval_seconds": 0.05,
        "visibility_timeout_seconds": 5.0,
        "shutdown_grace_seconds": 5.0,
    }
    settings.update(overrides)
    return Config(**settings)


def registry() -> HandlerRegistry:
    registry = HandlerRegistry()
    for cls in (Add, Decline, Explode, Sleepy, Forbidden):
        registry.register(cls)
    return registry


class RunningWorker:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.exit_code = self.worker.run()

    def stop(self, timeout: float = 15.0) -> int | None:
        self.worker.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not stop"
        return self.exit_code


@contextmanager
def running(broker: Any, **config: Any) -> Iterator[RunningWorker]:
    handle = RunningWorker(Worker(make_config(**config), broker, registry=registry()))
    handle.thread.start()
    try:
        yield handle
    finally:
        if handle.thread.is_alive():
            handle.stop()


def step(handler: str = "add", **overrides: Any) -> StepMessage:
    fields: dict[str, Any] = {
        "task_uuid": uuid.uuid4(),
        "step_uuid": uuid.uuid4(),
        "namespace": NS,
        "task_name": "fulfil",
        "task_version": "1.0.0",
        "step_name": f"{handler}_step",
        "handler": HandlerSpec(handler),
        "attempt": 1,
        "max_attempts": 3,
        "retryable": True,
        "input_data": {"a": 2, "b": 3},
        "correlation_id": "corr-7",
        "trace_context": {"traceparent": TRACEPARENT},
    }
    fields.update(overrides)
    return StepMessage(**fields)


def send(broker: InMemoryBroker, *messages: StepMessage) -> None:
    broker.send_batch(QUEUE, [encode(message) for message in messages])


def collect_results(
    broker: InMemoryBroker, expected: int, timeout: float = 10.0
) -> list[StepResultMessage]:
    results: list[StepResultMessage] = []
    deadline = time.monotonic() + timeout
    while len(results) < expected and time.monotonic() < deadline:
        for delivery in broker.receive(ORCHESTRATION_RESULTS_QUEUE, max_messages=10, wait=0.1):
            message = decode(delivery.body)
            assert isinstance(message, StepResultMessage)
            results.append(message)
            broker.ack(delivery)
    assert len(results) == expected, f"expected {expected} results, got {results}"
    return results


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def queue_empty(broker: InMemoryBroker, queue: str = QUEUE) -> bool:
    stats = broker.queue_stats(queue)
    return stats.ready == 0 and stats.in_flight == 0


# Results


def test_success_reaches_the_results_queue_with_every_field(broker: InMemoryBroker) -> None:
    message = step("add")
    with running(broker) as handle:
        send(broker, message)
        [result] = collect_results(broker, 1)
        worker_id = handle.worker.worker_id
    assert (result.task_uuid, result.step_uuid, result.attempt) == (
        message.task_uuid,
        message.step_uuid,
        1,
    )
    assert result.status == "success"
    assert result.result == {"sum": 5}
    assert result.metadata == {"m": 1}
    assert result.error is None
    assert result.correlation_id == "corr-7"
    # The trace continues: same trace id (the span id is the worker's own span when a
    # tracer provider is installed, or the caller's when none is).
    assert result.trace_context["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]
    assert result.worker_id == worker_id
    host, pid, short = worker_id.split(":")
    assert (int(pid), len(short)) == (os.getpid(), 8) and host
    assert result.started_at.tzinfo == UTC and result.finished_at >= result.started_at
    assert queue_empty(broker)


def test_failure_result_carries_the_handlers_error(broker: InMemoryBroker) -> None:
    with running(broker):
        send(broker, step("decline"))
        [result] = collect_results(broker, 1)
    assert result.status == "failure" and result.result is None
    assert result.error is not None
    assert result.error.message == "card declined"
    assert result.error.error_type == "payment_error"
    assert result.error.retryable is False
    assert result.error.error_code == "DECLINED"
    assert result.metadata == {"card": "1234"}


def test_an_exception_is_a_retryable_failure_with_type_and_backtrace(
    broker: InMemoryBroker,
) -> None:
    with running(broker):
        send(broker, step("explode"), step("forbidden"))
        results = collect_results(broker, 2)
    by_message = {r.error.message: r.error for r in results if r.error is not None}
    crash = by_message["ZeroDivisionError: division by zero in pricing"]
    assert crash.retryable is True and crash.error_type == "handler_error"
    assert any("division by zero" in line for line in crash.backtrace)
    forbidden = by_message["not allowed"]
    assert (forbidden.retryable, forbidden.error_code) == (False, "E403")


def test_unknown_handler_is_a_permanent_failure(broker: InMemoryBroker) -> None:
    with running(broker):
        send(broker, step("who_knows"))
        [result] = collect_results(broker, 1)
    assert result.error is not None
    assert result.error.retryable is False
    assert "'who_knows'" in result.error.message


# Bad messages


def dead_letters(broker: InMemoryBroker) -> list[dict[str, Any]]:
    letters = broker.receive(dead_letter_queue(QUEUE), max_messages=10)
    return [msgspec.json.decode(letter.body) for letter in letters]


def test_undecodable_and_wrong_kind_messages_are_dead_lettered(broker: InMemoryBroker) -> None:
    now = datetime.now(UTC)
    result = StepResultMessage(uuid.uuid4(), uuid.uuid4(), 1, "success", now, now, "w")
    wrong_kind = encode(result)  # a valid message, but not one a worker runs
    with running(broker):
        broker.send_batch(QUEUE, [b"not json at all", b'{"kind":"nope"}', wrong_kind])
        send(broker, step("add"))  # the worker carries on after them
        collect_results(broker, 1)
        wait_until(lambda: queue_empty(broker))
    reasons = sorted(letter["reason"] for letter in dead_letters(broker))
    assert len(reasons) == 3
    assert sum("undecodable" in reason for reason in reasons) == 2
    assert any("StepResultMessage" in reason for reason in reasons)


# Timeouts


def test_a_handler_past_its_timeout_yields_a_retryable_timeout_failure(
    broker: InMemoryBroker,
) -> None:
    message = step("sleepy", input_data={"seconds": 3.0}, timeout_seconds=0.2)
    with running(broker, shutdown_grace_seconds=0.1):
        started = time.monotonic()
        send(broker, message)
        [result] = collect_results(broker, 1)
        elapsed = time.monotonic() - started
        assert queue_empty(broker)  # acked, not left to be redelivered
    assert elapsed < 2.0, "the timeout was not enforced"
    assert result.status == "failure" and result.error is not None
    assert (result.error.error_type, result.error.retryable) == ("timeout", True)
    assert "0.2s" in result.error.message


def test_a_handler_within_its_timeout_succeeds(broker: InMemoryBroker) -> None:
    with running(broker):
        send(broker, step("sleepy", input_data={"seconds": 0.05}, timeout_seconds=5))
        [result] = collect_results(broker, 1)
    assert result.status == "success"


# The attempt fence


def test_a_duplicate_delivery_of_the_same_attempt_runs_once(broker: InMemoryBroker) -> None:
    message = step("sleepy", input_data={"seconds": 0.4})
    with running(broker, visibility_timeout_seconds=0.6):
        send(broker, message, message)  # a duplicate arrives while the first runs
        collect_results(broker, 1)
        wait_until(lambda: queue_empty(broker))
        send(broker, message)  # and one after it finished
        wait_until(lambda: queue_empty(broker))
        time.sleep(0.2)
    assert calls[str(message.step_uuid)] == 1
    assert broker.queue_stats(ORCHESTRATION_RESULTS_QUEUE).ready == 0  # no second result


def test_a_new_attempt_of_the_same_step_runs_again(broker: InMemoryBroker) -> None:
    first = step("add")
    second = msgspec.structs.replace(first, attempt=2)
    with running(broker):
        send(broker, first, second)
        results = collect_results(broker, 2)
    assert sorted(r.attempt for r in results) == [1, 2]
    assert calls[str(first.step_uuid)] == 2


# Heartbeat and backpressure


def test_heartbeat_keeps_a_long_step_invisible(broker: InMemoryBroker) -> None:
    message = step("sleepy", input_data={"seconds": 2.0})
    with running(broker, visibility_timeout_seconds=0.5):
        send(broker, message)
        wait_until(lambda: broker.queue_stats(QUEUE).in_flight == 1)
        deadline = time.monotonic() + 1.8  # over three visibility timeouts
        while time.monotonic() < deadline:
            assert broker.queue_stats(QUEUE).ready == 0, "a live step became visible"
            time.sleep(0.05)
        [result] = collect_results(broker, 1)
    assert result.status == "success"
    assert calls[str(message.step_uuid)] == 1


def test_never_holds_more_messages_than_free_slots(broker: InMemoryBroker) -> None:
    messages = [step("sleepy", input_data={"seconds": 0.15}) for _ in range(8)]
    with running(broker, concurrency=2, batch_size=16):
        send(broker, *messages)
        peak = 0
        deadline = time.monotonic() + 5
        while not queue_empty(broker) and time.monotonic() < deadline:
            peak = max(peak, broker.queue_stats(QUEUE).in_flight)
            time.sleep(0.01)
        collect_results(broker, 8)
    assert 1 <= peak <= 2


def test_every_namespace_of_a_worker_gets_slots_while_another_polls_idle(
    broker: InMemoryBroker,
) -> None:
    # Given a worker of two namespaces, the first of which stays empty and long-polls
    other = worker_queue("billing")
    broker.ensure_queue(other)
    with running(broker, namespaces=(NS, "billing"), concurrency=1, poll_interval_seconds=0.5):
        time.sleep(0.2)  # both consumers are polling
        # When a step arrives on the second namespace's queue
        broker.send(other, encode(step(namespace="billing")))
        # Then it runs promptly, not after the first consumer lets go of every slot
        [result] = collect_results(broker, 1, timeout=3.0)
    assert result.status == "success"


class FlakyBroker(InMemoryBroker):
    """Fails its first `failures` receives, as a broker restarting would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def receive(self, queue: str, **kwargs: Any) -> list[Delivery]:
        if queue == QUEUE and self.failures > 0:
            self.failures -= 1
            raise BrokerError("connection reset")
        return super().receive(queue, **kwargs)


def test_broker_errors_are_retried_with_backoff() -> None:
    broker = FlakyBroker(failures=2)
    broker.ensure_queue(QUEUE)
    broker.ensure_queue(ORCHESTRATION_RESULTS_QUEUE)
    with running(broker) as handle:
        send(broker, step("add"))
        [result] = collect_results(broker, 1)
        assert handle.thread.is_alive()
    assert result.status == "success" and broker.failures == 0


# Shutdown


def test_stop_finishes_in_flight_steps_and_leaves_the_rest(broker: InMemoryBroker) -> None:
    messages = [step("sleepy", input_data={"seconds": 0.5}) for _ in range(5)]
    with running(broker, concurrency=2) as handle:
        send(broker, *messages)
        wait_until(lambda: handle.worker.in_flight == 2)
        exit_code = handle.stop()
    assert exit_code == 0
    results = collect_results(broker, 2)
    assert all(result.status == "success" for result in results)
    stats = broker.queue_stats(QUEUE)
    assert (stats.ready, stats.in_flight) == (3, 0)


class StopOnReceiveBroker(InMemoryBroker):
    """Asks the worker to stop just as a batch arrives: received, but never started."""

    worker: Worker | None = None

    def receive(self, queue: str, **kwargs: Any) -> list[Delivery]:
        deliveries = super().receive(queue, **kwargs)
        if deliveries and queue == QUEUE and self.worker is not None:
            self.worker.stop()
        return deliveries


def test_stop_hands_back_received_but_unstarted_steps_at_once() -> None:
    broker = StopOnReceiveBroker()
    broker.ensure_queue(QUEUE)
    broker.ensure_queue(ORCHESTRATION_RESULTS_QUEUE)
    send(broker, step("add"), step("add"))
    worker = Worker(make_config(), broker, registry=registry())
    broker.worker = worker
    assert worker.run() == 0
    stats = broker.queue_stats(QUEUE)
    assert (stats.ready, stats.in_flight) == (2, 0)  # visible again now, not after a timeout
    assert broker.queue_stats(ORCHESTRATION_RESULTS_QUEUE).ready == 0


def test_steps_still_running_after_the_grace_period_are_handed_back(
    broker: InMemoryBroker,
) -> None:
    with running(broker, shutdown_grace_seconds=0.2) as handle:
        send(broker, step("sleepy", input_data={"seconds": 3.0}))
        wait_until(lambda: handle.worker.in_flight == 1)
        started = time.monotonic()
        assert handle.stop() == 0
        assert time.monotonic() - started < 2.0
    assert broker.queue_stats(QUEUE).ready == 1


def test_run_worker_stops_gracefully_on_sigterm(broker: InMemoryBroker) -> None:
    message = step("sleepy", input_data={"seconds": 0.3})
    send(broker, message)

    def terminate_when_busy() -> None:
        wait_until(lambda: calls.get(str(message.step_uuid)) == 1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_when_busy, daemon=True).start()
    previous = signal.getsignal(signal.SIGTERM)
    assert run_worker(make_config(), broker, registry=registry()) == 0
    assert signal.getsignal(signal.SIGTERM) == previous
    [result] = collect_results(broker, 1)
    assert result.status == "success"  # the in-flight step finished before exit


def test_run_worker_returns_2_when_a_handler_module_is_missing(
    broker: InMemoryBroker,
) -> None:
    assert run_worker(make_config(handlers=("no_such_handlers_mod",)), broker) == 2


# Process pool


def test_process_pool_runs_handlers_in_child_processes(
    broker: InMemoryBroker, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"cpu_handlers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "import os\n"
        "from tasker.handlers import step_handler\n"
        "@step_handler('whoami')\n"
        "def whoami(context):\n"
        "    return {'pid': os.getpid(), 'n': context.get_input('a')}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = make_config(handlers=(module,), concurrency=2)
    worker = Worker(config, broker, process_pool=True)
    handle = RunningWorker(worker)
    handle.thread.start()
    try:
        send(broker, step("whoami"), step("whoami"))
        results = collect_results(broker, 2, timeout=30)
    finally:
        assert handle.stop() == 0
    assert all(r.status == "success" for r in results), results
    assert {r.result["pid"] for r in results}.isdisjoint({os.getpid()})
