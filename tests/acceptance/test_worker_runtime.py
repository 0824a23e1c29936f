"""The worker runtime with real processes on each broker: scale-out, crashes, shutdown,
timeouts and registration. Each test builds its own cluster on a fresh database (and vhost).

Handlers record their side effects in per-process logs (`handlers_worker_runtime`), so the
tests count executions from outside, as an operator would.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import pytest

from tasker.api.schemas import Task
from tasker.cli.cluster import LocalCluster
from tasker.cli.commands import register_templates
from tasker.client import TaskerClient
from tasker.state.db import Database
from tasker.state.records import WorkerRecord
from tasker.state.repository import StateRepository
from tasker.state.templates import load_template_directory
from tests.acceptance.conftest import BROKERS, cluster_config
from tests.acceptance.handlers_worker_runtime import SIDE_EFFECTS_ENV, read_events

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = Path(__file__).parent / "templates"
HANDLERS = "tests.acceptance.handlers_worker_runtime"
NS = "worker_runtime"
T = TypeVar("T")


class Harness:
    """A running cluster, its API client, its state (read directly), and the handlers'
    side-effect logs."""

    def __init__(
        self,
        cluster: LocalCluster,
        client: TaskerClient,
        repository: StateRepository,
        side_effects: Path,
    ) -> None:
        self.cluster = cluster
        self.client = client
        self.repository = repository
        self.side_effects = side_effects

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        events = read_events(self.side_effects)
        return [event for event in events if kind is None or event["event"] == kind]

    def create(self, name: str, context: dict[str, Any] | None = None) -> UUID:
        return self.client.create_task(NS, name, "1.0.0", context or {})

    def wait_all(self, tasks: list[UUID], timeout: float = 60.0) -> list[Task]:
        deadline = time.monotonic() + timeout
        return [self.client.wait(task, timeout=deadline - time.monotonic()) for task in tasks]

    def workers(self) -> dict[int, WorkerRecord]:
        return {worker.pid: worker for worker in self.repository.list_workers()}

    def wait_for_workers(self, count: int) -> dict[int, WorkerRecord]:
        """Wait until `count` of this cluster's worker processes registered as alive."""
        pids = {process.pid for process in self.cluster.workers}

        def registered() -> dict[int, WorkerRecord] | None:
            alive = {pid: w for pid, w in self.workers().items() if pid in pids and w.alive}
            return alive if len(alive) >= count else None

        return wait_for(registered, 20, f"{count} registered workers")


def wait_for(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `probe` until it returns something other than None or False."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


@contextmanager
def running_cluster(
    request: pytest.FixtureRequest,
    broker: str,
    make_database: Callable[[], str],
    side_effects: Path,
    *,
    workers: int,
    concurrency: int = 4,
    namespaces: str = NS,
    **settings: object,
) -> Iterator[Harness]:
    config = cluster_config(request, broker, make_database, **settings)
    register_templates(config, load_template_directory(TEMPLATES))
    environment = {
        # The workers import the handlers from `tests`.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        SIDE_EFFECTS_ENV: str(side_effects),
        "TASKER_CONCURRENCY": str(concurrency),
        "TASKER_WORKER_HEARTBEAT_SECONDS": "0.5",
    }
    cluster = LocalCluster(
        config,
        namespaces=namespaces,
        handler_modules=HANDLERS,
        workers=workers,
        extra_env=environment,
    )
    client = TaskerClient(cluster.api_url)
    database = Database(config.database_url, max_size=2)
    try:
        with cluster:
            yield Harness(cluster, client, StateRepository(database), side_effects)
    finally:
        client.close()
        database.close()


def exit_codes_of(harness: Harness, processes: list[Any]) -> list[int]:
    return [harness.cluster.exit_codes[process.pid] for process in processes]


@pytest.mark.parametrize("broker", BROKERS)
def test_three_workers_share_300_steps_each_running_exactly_once(
    request: pytest.FixtureRequest, broker: str, make_database: Callable[[], str], tmp_path: Path
) -> None:
    with running_cluster(request, broker, make_database, tmp_path, workers=3) as harness:
        harness.wait_for_workers(3)
        tasks = [harness.create("fan_out") for _ in range(100)]

        views = harness.wait_all(tasks)
        runs = harness.events("ran")

    assert [view.status for view in views] == ["complete"] * 100
    step_uuids = {str(step.step_uuid) for view in views for step in view.steps}
    per_step = Counter(event["step"] for event in runs)
    assert len(step_uuids) == 300 and set(per_step) == step_uuids
    assert set(per_step.values()) == {1}, "a side effect happened more than once"
    per_worker = Counter(event["pid"] for event in runs)
    assert set(per_worker) == {process.pid for process in harness.cluster.workers}, per_worker
    assert set(harness.cluster.exit_codes.values()) == {0}


@pytest.mark.parametrize("broker", BROKERS)
def test_a_step_of_a_killed_worker_is_redelivered_and_completes_elsewhere(
    request: pytest.FixtureRequest, broker: str, make_database: Callable[[], str], tmp_path: Path
) -> None:
    visibility = 2.5
    with running_cluster(
        request,
        broker,
        make_database,
        tmp_path,
        workers=2,
        concurrency=1,
        visibility_timeout_seconds=visibility,
    ) as harness:
        harness.wait_for_workers(2)
        task = harness.create("slow_step", {"seconds": 3})
        victim = wait_for(lambda: harness.events("started"), 15, "the step to start")[0]["pid"]

        os.kill(victim, signal.SIGKILL)
        killed_at = time.time()
        view = harness.client.wait(task, timeout=30)
        starts, finishes = harness.events("started"), harness.events("finished")

    (survivor,) = {process.pid for process in harness.cluster.workers} - {victim}
    assert view.status == "complete"
    (step,) = view.steps
    assert step.attempts == 1  # the same attempt, redelivered: not a retry
    assert step.results == {"pid": survivor}
    assert [event["pid"] for event in starts] == [victim, survivor]
    assert [event["pid"] for event in finishes] == [survivor]
    if broker == "pgmq":
        # Hidden until the lease lapsed: the visibility timeout, less at most the one
        # heartbeat period since it was last extended. (RabbitMQ requeues a dead
        # connection's deliveries at once, which is sooner still.)
        assert starts[1]["at"] - killed_at >= visibility * 2 / 3 - 0.2
    assert harness.cluster.exit_codes[victim] == -signal.SIGKILL
    assert harness.cluster.exit_codes[survivor] == 0


@pytest.mark.parametrize("broker", BROKERS)
def test_sigterm_lets_in_flight_steps_finish_and_loses_nothing(
    request: pytest.FixtureRequest, broker: str, make_database: Callable[[], str], tmp_path: Path
) -> None:
    with running_cluster(
        request, broker, make_database, tmp_path, workers=1, concurrency=3
    ) as harness:
        harness.wait_for_workers(1)
        tasks = [harness.create("slow_step", {"seconds": 2}) for _ in range(5)]
        wait_for(lambda: len(harness.events("started")) == 3, 15, "three steps in flight")
        (busy,) = harness.cluster.workers

        busy.terminate()
        busy_exit = busy.wait(timeout=20)
        finished_before_exit = harness.events("finished")
        harness.cluster.start_worker()  # runs what the stopped worker never started
        views = harness.wait_all(tasks, timeout=30)
        starts, finishes = harness.events("started"), harness.events("finished")

    assert busy_exit == 0
    assert [event["pid"] for event in finished_before_exit] == [busy.pid] * 3
    assert [view.status for view in views] == ["complete"] * 5
    assert Counter(event["step"] for event in starts) == Counter(
        event["step"] for event in finishes
    )
    assert len(finishes) == 5 and len({event["step"] for event in finishes}) == 5
    assert set(harness.cluster.exit_codes.values()) == {0}


@pytest.mark.parametrize("broker", BROKERS)
def test_a_handler_past_its_timeout_fails_retryably_and_the_retry_completes(
    request: pytest.FixtureRequest, broker: str, make_database: Callable[[], str], tmp_path: Path
) -> None:
    with running_cluster(request, broker, make_database, tmp_path, workers=1) as harness:
        task = harness.create("timeout_step")

        view = harness.client.wait(task, timeout=30)
        (step,) = view.steps
        history = harness.repository.step_transitions(step.step_uuid)

    assert view.status == "complete"
    assert step.attempts == 2 and step.results == {"attempt": 2}
    assert step.last_error["error_type"] == "timeout" and step.last_error["retryable"]
    assert "exceeded its timeout of 1.0s" in step.last_error["message"]
    retried = [t for t in history if t.to_state == "waiting_for_retry"]
    assert [t.metadata["attempt"] for t in retried] == [1]
    assert history[-1].to_state == "complete" and history[-1].metadata["attempt"] == 2


@pytest.mark.parametrize("broker", BROKERS)
def test_a_running_worker_registers_and_is_stopped_after_sigterm(
    request: pytest.FixtureRequest, broker: str, make_database: Callable[[], str], tmp_path: Path
) -> None:
    with running_cluster(
        request, broker, make_database, tmp_path, workers=2, namespaces=f"{NS},audit"
    ) as harness:
        registered = harness.wait_for_workers(2)
        leaving, staying = harness.cluster.workers

        leaving.terminate()
        assert leaving.wait(timeout=20) == 0
        stopped = wait_for(
            lambda: harness.workers()[leaving.pid].status == "stopped", 10, "stopped"
        )
        after = harness.workers()

    assert stopped
    assert set(registered) == {leaving.pid, staying.pid}
    for worker in registered.values():
        assert worker.namespaces == [NS, "audit"] and worker.concurrency == 4
        assert worker.status == "running" and worker.heartbeat_interval_seconds == 0.5
    assert not after[leaving.pid].alive
    assert after[staying.pid].alive and after[staying.pid].status == "running"
