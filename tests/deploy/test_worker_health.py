"""The worker's health endpoint (container probes) and the image's HEALTHCHECK script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tasker.config import ConfigError, load_config
from tasker.handlers.health_server import HealthServer, WorkerHealth, serve_worker_health
from tests.deploy.deployfiles import DEPLOY


class State:
    def __init__(self) -> None:
        self.ready = True
        self.in_flight = 3


@pytest.fixture
def served() -> Iterator[tuple[State, str]]:
    state = State()
    health = WorkerHealth(
        worker_id="w-1", ready=lambda: state.ready, in_flight=lambda: state.in_flight
    )
    server = serve_worker_health("127.0.0.1:0", health)
    assert server is not None
    host, port = server.address
    yield state, f"{host}:{port}"
    server.close()


def _get(bind: str, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://{bind}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_live_and_ready_answer_200_with_the_worker_state(served: tuple[State, str]) -> None:
    _, bind = served

    assert _get(bind, "/health/live") == (
        200,
        {"status": "healthy", "worker_id": "w-1", "in_flight": 3},
    )
    assert _get(bind, "/health/ready")[0] == 200
    assert _get(bind, "/health")[0] == 200
    assert _get(bind, "/nope")[0] == 404


def test_a_stopping_worker_is_live_but_not_ready(served: tuple[State, str]) -> None:
    state, bind = served
    state.ready = False

    assert _get(bind, "/health/live")[0] == 200
    assert _get(bind, "/health/ready") == (
        503,
        {"status": "unhealthy", "worker_id": "w-1", "in_flight": 3},
    )


def test_a_failing_readiness_check_reads_as_not_ready() -> None:
    def broken() -> bool:
        raise RuntimeError("boom")

    server = HealthServer("127.0.0.1:0", WorkerHealth(worker_id="w", ready=broken, in_flight=int))
    server.start()
    try:
        host, port = server.address
        assert _get(f"{host}:{port}", "/health/ready")[0] == 503
    finally:
        server.close()


def test_no_bind_serves_nothing_and_a_bad_bind_names_the_setting() -> None:
    health = WorkerHealth(worker_id="w", ready=lambda: True, in_flight=int)

    assert serve_worker_health(None, health) is None
    assert load_config(environ={}).worker_health_bind is None
    with pytest.raises(ConfigError, match="worker_health_bind"):
        load_config(environ={"TASKER_WORKER_HEALTH_BIND": "no-port"})


def _healthcheck(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
    return subprocess.run(
        [sys.executable, str(DEPLOY / "healthcheck.py"), "ready"],
        env={**clean, **environment},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_image_healthcheck_probes_the_worker_endpoint(served: tuple[State, str]) -> None:
    state, bind = served
    port = bind.rsplit(":", 1)[1]
    environment = {"TASKER_WORKER_HEALTH_BIND": f"0.0.0.0:{port}"}

    healthy = _healthcheck(environment)
    state.ready = False
    unhealthy = _healthcheck(environment)

    assert healthy.returncode == 0, healthy.stderr
    assert unhealthy.returncode == 1
    assert "503" in unhealthy.stderr


def test_the_image_healthcheck_probes_the_orchestrator_api() -> None:
    down = _healthcheck({"TASKER_API_BIND": "127.0.0.1:9"})  # nothing listens on 9
    disabled = _healthcheck({"TASKER_API_ENABLED": "false"})

    assert down.returncode == 1
    assert "http://127.0.0.1:9/health/ready" in down.stderr
    assert disabled.returncode == 0


def test_the_server_thread_is_a_daemon(served: tuple[State, str]) -> None:
    names = {t.name: t.daemon for t in threading.enumerate()}
    assert names.get("tasker-worker-health") is True
