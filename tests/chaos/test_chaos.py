"""Chaos: a batch of tasks runs while processes are killed, the database restarts or the
broker drops its connections. Every task must complete with the right result, no step may
be recorded complete twice, and every completed step's handler ran at least once."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Iterator
from urllib.parse import unquote, urlsplit

import pytest

from tasker.config import Config, load_config
from tests.acceptance.conftest import BROKERS, cluster_config
from tests.chaos.harness import ChaosReport, ChaosRun, rabbitmq_close_connections
from tests.conftest import service_unavailable
from tests.support.postgres_server import PostgresUnavailableError, TestPostgres

pytestmark = pytest.mark.slow
TASKS = int(os.environ.get("TASKER_CHAOS_TASKS", "200"))
SETTINGS: dict[str, object] = {
    "visibility_timeout_seconds": 3,
    "sweep_interval_seconds": 1.0,
    "republish_after_seconds": 5.0,
    "concurrency": 4,
}


def assert_nothing_lost_or_doubled(report: ChaosReport) -> None:
    print(f"\nchaos {report.scenario}/{report.broker}: {report.row()}")
    assert (report.completed, report.lost) == (report.tasks, 0), report.row()
    assert report.wrong_results == 0, report.row()
    assert report.double_recorded == 0, report.row()
    assert report.steps_without_execution == 0, report.row()
    assert report.executions >= report.steps, report.row()
    assert report.faults, f"no fault was injected before the run ended: {report.row()}"


@pytest.fixture(params=BROKERS)
def chaos_config(request: pytest.FixtureRequest, make_database: Callable[[], str]) -> Config:
    return cluster_config(request, request.param, make_database, **SETTINGS)


def chaos_run(config: Config, scenario: str, *, orchestrators: int, workers: int) -> ChaosRun:
    run = ChaosRun(config, scenario, orchestrators=orchestrators, workers=workers)
    run.prepare()
    return run


def at_progress(shares: tuple[float, ...], action: Callable[[], None]) -> Callable[..., None]:
    """Fault when each share of the tasks has finished: the engine's speed cannot outrun a
    schedule tied to its own progress, so every fault lands while work is in flight."""

    def chaos(run: ChaosRun, done: threading.Event) -> None:
        for share in shares:
            while run.finished_share() < share:
                if done.wait(0.05):
                    return
            run.fault(action)

    return chaos


def test_workers_sigkilled_mid_step_again_and_again(chaos_config: Config) -> None:
    run = chaos_run(chaos_config, "worker_sigkill", orchestrators=1, workers=3)

    def kill_a_worker() -> None:
        alive = [worker for worker in run.cluster.workers if worker.poll() is None]
        random.choice(alive).kill()
        run.cluster.start_worker()

    report = run.run(TASKS, at_progress((0.05, 0.25, 0.45, 0.65, 0.8), kill_a_worker))

    assert_nothing_lost_or_doubled(report)


def test_orchestrator_sigkilled_and_restarted(chaos_config: Config) -> None:
    run = chaos_run(chaos_config, "orchestrator_restart", orchestrators=1, workers=2)

    def kill_and_restart() -> None:
        run.cluster.orchestrators[-1].kill()
        run.cluster.orchestrators[-1].wait()
        run.cluster.start_orchestrator()

    report = run.run(TASKS, at_progress((0.1, 0.5), kill_and_restart))

    assert_nothing_lost_or_doubled(report)


def test_one_of_two_orchestrators_killed_the_other_carries_on(chaos_config: Config) -> None:
    run = chaos_run(chaos_config, "one_of_two_orchestrators", orchestrators=2, workers=2)

    report = run.run(TASKS, at_progress((0.2,), lambda: run.cluster.orchestrators[0].kill()))

    assert_nothing_lost_or_doubled(report)


def test_rabbitmq_connections_closed_mid_run(
    request: pytest.FixtureRequest, make_database: Callable[[], str]
) -> None:
    config = cluster_config(request, "rabbitmq", make_database, **SETTINGS)
    vhost = unquote(urlsplit(config.rabbitmq_url).path.lstrip("/"))
    run = chaos_run(config, "rabbitmq_connections_closed", orchestrators=1, workers=2)

    report = run.run(TASKS, at_progress((0.1, 0.4, 0.7), lambda: rabbitmq_close_connections(vhost)))

    assert_nothing_lost_or_doubled(report)


@pytest.fixture
def own_postgres() -> Iterator[TestPostgres]:
    try:
        server = TestPostgres().initialize()
        server.start()
    except (PostgresUnavailableError, OSError) as exc:
        service_unavailable("a test-owned PostgreSQL server", exc)
    try:
        yield server
    finally:
        server.destroy()


@pytest.mark.parametrize("broker", [pytest.param(b.values[0], marks=b.marks) for b in BROKERS])
def test_postgres_restarted_mid_run(
    broker: str, own_postgres: TestPostgres, request: pytest.FixtureRequest
) -> None:
    overrides: dict[str, object] = {"database_url": own_postgres.url, "broker": broker, **SETTINGS}
    if broker == "rabbitmq":
        overrides["rabbitmq_url"] = request.getfixturevalue("make_vhost")(request)
    config = load_config(overrides=overrides, environ={})
    run = chaos_run(config, "postgres_restart", orchestrators=1, workers=2)

    report = run.run(TASKS, at_progress((0.2,), own_postgres.restart))

    assert_nothing_lost_or_doubled(report)
