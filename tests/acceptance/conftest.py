"""Acceptance fixtures: a real cluster (orchestrator + worker processes) per broker.

Each cluster gets a fresh database, and on RabbitMQ a fresh virtual host, so runs never
see each other's messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tasker.cli.cluster import LocalCluster
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
        **settings,
    }
    if broker == "rabbitmq":
        overrides["rabbitmq_url"] = request.getfixturevalue("make_vhost")()
    config = load_config(overrides=overrides, environ={})
    prepare_database(config)
    register_templates(config, load_template_directory(TEMPLATE_DIRECTORY))
    return config


class RunningCluster:
    def __init__(self, cluster: LocalCluster, client: TaskerClient) -> None:
        self.cluster = cluster
        self.client = client
        self.config = cluster.config


@pytest.fixture(scope="module", params=BROKERS)
def example_cluster(
    request: pytest.FixtureRequest, make_database: Callable[[], str]
) -> Iterator[RunningCluster]:
    config = cluster_config(request, request.param, make_database)
    cluster = LocalCluster(config, namespaces="examples", handler_modules=EXAMPLE_HANDLERS)
    client = TaskerClient(config)
    with cluster:
        yield RunningCluster(cluster, client)
    client.close()
    assert all(code == 0 for code in cluster.exit_codes.values()), cluster.exit_codes
