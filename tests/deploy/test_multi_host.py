"""Orchestrator and workers on separate hosts: nothing depends on sharing a machine.

Each role runs in its own Linux network namespace (ip netns + veth, see `hosts.py`):
PostgreSQL on `db`, RabbitMQ on `mq` (test-owned instances bound to their veth addresses),
the migration and the orchestrator on `orch`, one worker on each of `worker1` and
`worker2`, and the client on `client`. They share no Unix socket, no loopback and no
network with this machine's own services, only the veth addresses (files are still shared:
the processes run this checkout). The commands are the systemd units' ExecStart lines and
the settings the env example files' (with the addresses of these hosts), so this is the
bare-host deployment in deploy/ run for real. A batch of example workflows completes on
each broker.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.deployfiles import ENV_FILES, ROOT, SYSTEMD, exec_start, parse_env_file
from tests.deploy.hosts import TestNetwork, missing_prerequisites

pytestmark = pytest.mark.slow

HOSTS = ("db", "mq", "orch", "worker1", "worker2", "client")
TASKS = 20
WORKER_HEALTH_PORT = 8081
API_PORT = 8080  # TASKER_API_BIND in env/tasker.env.example
# even_number 2: each linear step squares its parent; the diamond's branches square and
# cube the start, and the end multiplies them.
LINEAR = {"linear_step_1": 4, "linear_step_2": 16, "linear_step_3": 256, "linear_step_4": 65536}
DIAMOND = {"diamond_start": 4, "diamond_branch_b": 16, "diamond_branch_c": 64, "diamond_end": 1024}


def _unavailable(reason: str) -> None:
    message = f"multi-host test NOT RUN: {reason}"
    if os.environ.get("CI"):
        pytest.fail(f"CI requires the multi-host test: {message}")
    import warnings

    warnings.warn(message, stacklevel=2)
    pytest.skip(message)


class Servers:
    def __init__(self, network: TestNetwork, postgres_url: str, rabbitmq_url: str) -> None:
        self.network = network
        self.postgres_url = postgres_url
        self.rabbitmq_url = rabbitmq_url


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    reason = missing_prerequisites()
    if reason:
        _unavailable(reason)
    network = TestNetwork(HOSTS)
    try:
        postgres_url = network.start_postgres("db")
        rabbitmq_url = network.start_rabbitmq("mq")
        servers = Servers(network, postgres_url, rabbitmq_url)
        _wait_for(servers, "postgres", ["pg_isready", "-q", "-d", postgres_url], 60)
        probe = f"import pika; pika.BlockingConnection(pika.URLParameters({rabbitmq_url!r}))"
        _wait_for(servers, "rabbitmq", [_python(), "-c", probe], 90)
        yield servers
    finally:
        network.close()


def _python() -> str:
    return str(ROOT / ".venv" / "bin" / "python") if _venv_python_exists() else _sys_python()


def _venv_python_exists() -> bool:
    return (ROOT / ".venv" / "bin" / "python").exists()


def _sys_python() -> str:
    import sys

    return sys.executable


def _healthcheck() -> list[str]:
    return [_python(), str(ROOT / "deploy" / "healthcheck.py"), "ready"]


def _wait_for(
    servers: Servers, what: str, argv: list[str], timeout: float, *, api_bind: str | None = None
) -> None:
    deadline = time.monotonic() + timeout
    environment = _base_environment()
    if api_bind is not None:
        environment["TASKER_API_BIND"] = api_bind
    while time.monotonic() < deadline:
        if servers.network.run("client", argv, env=environment, timeout=30).returncode == 0:
            return
        time.sleep(0.5)
    pytest.fail(f"{what} did not come up in {timeout}s\n{servers.network.log_tail()}")


def _base_environment() -> dict[str, str]:
    """A clean environment: no TASKER_* from this shell, nothing but what a unit would get."""
    keep = ("PATH", "HOME", "LANG", "PYTHONPATH")
    return {key: os.environ[key] for key in keep if key in os.environ}


def _settings(servers: Servers, broker: str, database: str) -> dict[str, str]:
    """The env example files' settings, pointed at these hosts."""
    settings = {**parse_env_file(ENV_FILES[0]), **parse_env_file(ENV_FILES[1])}
    settings.update(
        {
            "TASKER_DATABASE_URL": servers.postgres_url.rsplit("/", 1)[0] + f"/{database}",
            "TASKER_BROKER": broker,
            "TASKER_RABBITMQ_URL": servers.rabbitmq_url,
            "TASKER_TEMPLATE_PATH": str(ROOT / "examples" / "templates"),
            "TASKER_LOG_FORMAT": "text",
            "TASKER_POLL_INTERVAL_SECONDS": "0.5",
            "TASKER_VISIBILITY_TIMEOUT_SECONDS": "10",
            "TASKER_SHUTDOWN_GRACE_SECONDS": "5",
            # Clients (the CLI, the batch) reach the orchestrator's API on its host.
            "TASKER_API_URL": f"http://{servers.network.addresses['orch']}:{API_PORT}",
        }
    )
    return {**_base_environment(), **settings}


def _tasker(unit: str) -> list[str]:
    """A unit's ExecStart with the installed `tasker` replaced by this checkout's."""
    argv = exec_start(SYSTEMD / unit)
    assert Path(argv[0]).name == "tasker"
    return [_python(), "-m", "tasker", *argv[1:]]


@pytest.mark.parametrize("broker", ["pgmq", "rabbitmq"])
def test_a_batch_of_workflows_completes_across_hosts(servers: Servers, broker: str) -> None:
    network = servers.network
    started = time.monotonic()
    database = f"tasker_{broker}"
    created = network.run(
        "client",
        ["psql", "-q", "-d", servers.postgres_url, "-c", f'CREATE DATABASE "{database}"'],
        env=_base_environment(),
    )
    assert created.returncode == 0, created.stderr
    settings = _settings(servers, broker, database)

    migrated = network.run("orch", _tasker("tasker-migrate.service"), env=settings, timeout=120)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr

    orchestrator = network.start(
        "orch",
        _tasker("tasker-orchestrator.service"),
        env=settings,
        cwd=ROOT,
        log_name=f"{broker}-orchestrator",
    )
    workers = []
    for host in ("worker1", "worker2"):
        health_bind = f"{network.addresses[host]}:{WORKER_HEALTH_PORT}"
        workers.append(
            network.start(
                host,
                _tasker("tasker-worker@.service"),
                env={**settings, "TASKER_WORKER_HEALTH_BIND": health_bind},
                cwd=ROOT,
                log_name=f"{broker}-{host}",
            )
        )
    try:
        # The orchestrator's own readiness, probed from the client host by the image's
        # HEALTHCHECK script: its API (and through it the database and broker) answers.
        orchestrator_api = f"{network.addresses['orch']}:{API_PORT}"
        _wait_for(servers, "the orchestrator API", _healthcheck(), 60, api_bind=orchestrator_api)
        registered = network.run(
            "client",
            [_python(), "-m", "tasker", "template", "register", "examples/templates"],
            env=settings,
        )
        assert registered.returncode == 0, registered.stderr
        finished = network.run(
            "client",
            [_python(), "-m", "tests.deploy.batch_client", str(TASKS), "60"],
            env=settings,
            timeout=90,
        )
        assert finished.returncode == 0, (
            finished.stdout + finished.stderr + "\n" + network.log_tail()
        )
        report = json.loads(finished.stdout.strip().splitlines()[-1])
        assert report["statuses"] == {"complete": TASKS}
        assert report["results"]["linear_workflow"] == {
            name: {"result": value} for name, value in LINEAR.items()
        }
        assert report["results"]["diamond_workflow"] == {
            name: {"result": value} for name, value in DIAMOND.items()
        }
        for host in ("worker1", "worker2"):
            # The image's HEALTHCHECK script, from the client host, over the veth.
            probe_env = {
                **_base_environment(),
                "TASKER_WORKER_HEALTH_BIND": f"{network.addresses[host]}:{WORKER_HEALTH_PORT}",
            }
            probed = network.run("client", _healthcheck(), env=probe_env)
            assert probed.returncode == 0, probed.stderr
        assert all(p.poll() is None for p in [orchestrator, *workers]), network.log_tail()
    finally:
        codes = _stop([orchestrator, *workers])
    assert codes == [0, 0, 0], network.log_tail()
    print(
        f"\nmulti-host {broker}: {TASKS} workflows in {report['seconds']:.1f}s "
        f"(whole run {time.monotonic() - started:.1f}s)"
    )


def _stop(processes: list[object]) -> list[int | None]:
    import signal
    import subprocess

    popens = [p for p in processes if isinstance(p, subprocess.Popen)]
    for process in popens:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    codes: list[int | None] = []
    for process in popens:
        try:
            codes.append(process.wait(timeout=30))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait())
    return codes
