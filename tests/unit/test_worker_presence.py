"""Worker presence heartbeats, against the in-memory broker: what is sent, and when."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tasker.api.schemas import WorkerInfo
from tasker.cli.main import build_parser
from tasker.cli.render import workers as render_workers
from tasker.config import Config
from tasker.handlers import StepContext, StepHandler, StepHandlerResult
from tasker.handlers.registry import HandlerRegistry
from tasker.handlers.worker import Worker
from tasker.messaging.memory import InMemoryBroker
from tasker.messaging.messages import (
    ORCHESTRATION_RESULTS_QUEUE,
    ORCHESTRATION_WORKER_HEARTBEATS_QUEUE,
    HandlerSpec,
    StepMessage,
    StepResultMessage,
    WorkerHeartbeatMessage,
    decode,
    encode,
    worker_queue,
)

NS = "presence"
release = threading.Event()


class Hold(StepHandler):
    """Runs until the test sets `release`, so the worker has a step in flight."""

    handler_name = "hold"

    def call(self, context: StepContext) -> StepHandlerResult:
        release.wait(10)
        return self.success({"held": True})


class NoHeartbeatsBroker(InMemoryBroker):
    """Fails every heartbeat send; everything else works."""

    def send_batch(self, queue: str, bodies: Any, **kwargs: Any) -> None:
        if queue == ORCHESTRATION_WORKER_HEARTBEATS_QUEUE:
            raise ConnectionError("heartbeat exchange unavailable")
        super().send_batch(queue, bodies, **kwargs)


def make_worker(broker: InMemoryBroker, **settings: Any) -> Worker:
    defaults: dict[str, Any] = {"concurrency": 2, "worker_heartbeat_seconds": 0.1}
    config = Config(
        broker="memory",
        namespaces=(NS, "other"),
        poll_interval_seconds=0.05,
        **{**defaults, **settings},
    )
    registry = HandlerRegistry()
    registry.register(Hold)
    return Worker(config, broker, registry=registry)


@pytest.fixture
def broker() -> Iterator[InMemoryBroker]:
    release.clear()
    broker = InMemoryBroker()
    broker.ensure_queue(ORCHESTRATION_WORKER_HEARTBEATS_QUEUE)
    yield broker
    release.set()
    broker.close()


def run_in_thread(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread


def heartbeats(broker: InMemoryBroker) -> list[WorkerHeartbeatMessage]:
    beats = []
    for delivery in broker.receive(ORCHESTRATION_WORKER_HEARTBEATS_QUEUE, max_messages=1000):
        message = decode(delivery.body)
        assert isinstance(message, WorkerHeartbeatMessage)
        beats.append(message)
    return beats


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def hold_step() -> StepMessage:
    return StepMessage(
        task_uuid=uuid.uuid4(),
        step_uuid=uuid.uuid4(),
        namespace=NS,
        task_name="t",
        task_version="1",
        step_name="hold",
        handler=HandlerSpec("hold"),
        attempt=1,
        max_attempts=1,
        retryable=True,
        input_data={},
    )


def test_heartbeat_message_round_trips_through_the_wire_format() -> None:
    now = datetime.now(UTC)
    beat = WorkerHeartbeatMessage("w1", "host", 42, ["a", "b"], 1, 4, now, now, "stopping", 2.0)

    assert decode(encode(beat)) == beat


def test_a_worker_announces_itself_periodically_with_what_it_serves(
    broker: InMemoryBroker,
) -> None:
    worker = make_worker(broker)
    thread = run_in_thread(worker)
    time.sleep(0.35)

    beats = heartbeats(broker)
    worker.stop()
    thread.join(10)

    assert len(beats) >= 3  # one at start, then one per 0.1 s
    first = beats[0]
    assert (first.worker_id, first.pid, first.status) == (worker.worker_id, os.getpid(), "running")
    assert first.namespaces == [NS, "other"] and first.concurrency == 2
    assert first.interval_seconds == 0.1
    assert [b.sent_at for b in beats] == sorted(b.sent_at for b in beats)
    assert {b.started_at for b in beats} == {first.started_at}


def test_heartbeats_report_the_steps_in_flight(broker: InMemoryBroker) -> None:
    worker = make_worker(broker)
    broker.ensure_queue(worker_queue(NS))
    broker.send(worker_queue(NS), encode(hold_step()))
    thread = run_in_thread(worker)

    wait_until(lambda: any(b.in_flight == 1 for b in heartbeats(broker)))
    release.set()
    worker.stop()
    thread.join(10)


def test_graceful_stop_announces_stopping_then_stopped_last(broker: InMemoryBroker) -> None:
    worker = make_worker(broker, worker_heartbeat_seconds=60.0)
    thread = run_in_thread(worker)
    wait_until(lambda: broker.queue_stats(ORCHESTRATION_WORKER_HEARTBEATS_QUEUE).ready >= 1)

    worker.stop()
    thread.join(10)

    assert [b.status for b in heartbeats(broker)] == ["running", "stopping", "stopped"]


def test_failing_heartbeats_do_not_hurt_step_processing() -> None:
    broker = NoHeartbeatsBroker()
    release.set()
    worker = make_worker(broker)
    broker.ensure_queue(worker_queue(NS))
    broker.ensure_queue(ORCHESTRATION_RESULTS_QUEUE)
    broker.send(worker_queue(NS), encode(hold_step()))
    thread = run_in_thread(worker)

    wait_until(lambda: broker.queue_stats(ORCHESTRATION_RESULTS_QUEUE).ready == 1)
    worker.stop()
    thread.join(10)

    (delivery,) = broker.receive(ORCHESTRATION_RESULTS_QUEUE)
    result = decode(delivery.body)
    assert isinstance(result, StepResultMessage) and result.status == "success"
    assert not thread.is_alive()


def test_worker_list_parses_next_to_running_a_worker() -> None:
    parser = build_parser()

    listing = parser.parse_args(["worker", "list", "--output", "json"])
    running = parser.parse_args(["worker", "--namespace", "a,b", "--concurrency", "2"])

    assert listing.run.__name__ == "worker_list" and listing.output == "json"
    assert running.run.__name__ == "worker" and running.namespace == "a,b"


def test_worker_list_table_shows_age_and_liveness() -> None:
    now = datetime.now(UTC)
    record = WorkerInfo("h:1:ab", "h", 1, ["a", "b"], 2, 4, "running", now, 1.25, True)

    table = render_workers([record], "table")

    assert "h:1:ab" in table and "a,b" in table and "2/4" in table
    assert "1.2s" in table and "yes" in table
    assert render_workers([], "table") == "no workers have registered yet"
