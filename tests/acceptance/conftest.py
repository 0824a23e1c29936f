"""Acceptance fixtures: a real cluster (orchestrator + worker processes) per broker.

Each cluster gets a fresh database, and on RabbitMQ a fresh virtual host, so runs never
see each other's messages; its orchestrator serves the API on a free port, which the
cluster's client (HTTP, like any application's) talks to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tasker.cli.cluster import LocalCluster, free_port
from tasker.cli.commands import prepare_database, register_templates
from tasker.client import TaskerClient
from tasker.config import Config, load_config
from tasker.examples import TEMPLATE_DIRECTORY
from tasker.state.templates import load_template_directory

BROKERS = [
    pytest.param("pgmq", marks=pytest.mark.postgres),
    pytest.param("rabbitmq", marks=[pytest.mark.postgres, pytest.mark.rabbitmq]),
]
EXAMPLE_HANDLERS = "tasker.examples.linear,tasker.examples.diamond"


def cluster_config(
    request: pytest.FixtureRequest,
    broker: str,
    make_database: Callable[[], str],
    **settings: object,
) -> Config:
    """A config for a fresh database (and vhost), migrated, with the examples registered."""
    overrides: dict[str, object] = {
        "database_url": make_database(),
        "broker": broker,
        "poll_interval_seconds": 0.5,
        "visibility_timeout_seconds": 10,
        "api_bind": f"127.0.0.1:{free_port()}",
        **settings,
    }
    if broker == "rabbitmq":
        overrides["rabbitmq_url"] = request.getfixturevalue("make_vhost")(request)
    config = load_config(overrides=overrides, environ={})
    prepare_database(config)
    register_templates(config, load_template_directory(TEMPLATE_DIRECTORY))
    return config


class RunningCluster:
    def __init__(self, cluster: LocalCluster, client: TaskerClient) -> None:
        self.cluster = cluster
        self.client = client
        self.config = cluster.config


def running_cluster(
    request: pytest.FixtureRequest, make_database: Callable[[], str], handler_modules: str
) -> Iterator[RunningCluster]:
    """A cluster serving the `examples` namespace on the fixture's broker; every process
    must exit 0 when it stops."""
    config = cluster_config(request, request.param, make_database)
    cluster = LocalCluster(config, namespaces="examples", handler_modules=handler_modules)
    client = TaskerClient(cluster.api_url)
    with cluster:
        yield RunningCluster(cluster, client)
    client.close()
    assert all(code == 0 for code in cluster.exit_codes.values()), cluster.exit_codes


@pytest.fixture(scope="module", params=BROKERS)
def example_cluster(
    request: pytest.FixtureRequest, make_database: Callable[[], str]
) -> Iterator[RunningCluster]:
    yield from running_cluster(request, make_database, EXAMPLE_HANDLERS)
