"""An in-process cluster for API tests: orchestrator actors, a worker thread and the API
server in this process (real PostgreSQL, PGMQ), so spans and metrics can be read here.

Spans go to an in-memory exporter installed once for the session (OpenTelemetry allows
one tracer provider per process); metrics to the process's Prometheus registry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tasker.actors.orchestrator import Orchestrator
from tasker.api.server import ApiServer
from tasker.api.services import ApiServices
from tasker.cli.cluster import free_port
from tasker.cli.commands import prepare_database, register_templates
from tasker.client import TaskerClient
from tasker.config import Config, load_config, with_overrides
from tasker.examples import TEMPLATE_DIRECTORY
from tasker.handlers.worker import Worker
from tasker.messaging.backends import broker_from_config
from tasker.state.db import Database
from tasker.state.repository import StateRepository
from tasker.state.templates import load_template_directory
from tasker.telemetry import logcontext
from tasker.telemetry.metrics import PrometheusMetrics
from tasker.telemetry.tracing import install_provider

EXAMPLE_HANDLERS = ("tasker.examples.linear", "tasker.examples.diamond")
#: Steps that fail on purpose (retries, operator actions), shared with the acceptance tests.
FAILURE_HANDLERS = "tests.acceptance.handlers_failures"
FAILURE_TEMPLATES = Path(__file__).parents[2] / "acceptance" / "failure_templates"


class InProcessCluster:
    """Orchestrator + worker + API of one config, all in this process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.database = Database(config.database_url, max_size=8)
        self.broker = broker_from_config(config)
        self.orchestrator = Orchestrator(config, self.broker, self.database)
        self.orchestrator.start()
        self.api_database = Database(config.database_url, max_size=4)
        self.servers: list[ApiServer] = []
        self.url = self.serve(config)
        worker_config = with_overrides(
            config,
            namespaces=("examples", "failures"),
            handlers=(*EXAMPLE_HANDLERS, FAILURE_HANDLERS),
        )
        self.worker_broker = broker_from_config(worker_config)
        self.worker = Worker(worker_config, self.worker_broker)
        self._worker_thread = threading.Thread(target=self.worker.run, daemon=True)
        self._worker_thread.start()

    def serve(self, config: Config) -> str:
        """Serve the API of this cluster with `config` (e.g. auth settings) on its bind."""
        reads = StateRepository(self.api_database)
        services = ApiServices(config, self.api_database, self.broker, reads, self.orchestrator)
        server = ApiServer(services)
        server.start()
        self.servers.append(server)
        return config.client_api_url

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        self.worker.stop(force=True)
        self._worker_thread.join(timeout=30)
        self.orchestrator.stop()
        for closeable in (self.worker_broker, self.broker, self.api_database, self.database):
            closeable.close()


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    install_provider(SimpleSpanProcessor(exporter), service="tasker-tests")
    return exporter


@pytest.fixture(scope="session")
def api_cluster(
    make_database: Callable[[], str], spans: InMemorySpanExporter
) -> Iterator[InProcessCluster]:
    PrometheusMetrics.install()
    logcontext.install()
    settings = {
        "database_url": make_database(),
        "broker": "pgmq",
        "poll_interval_seconds": 0.5,
        "visibility_timeout_seconds": 10,
        "api_bind": f"127.0.0.1:{free_port()}",
    }
    config = load_config(overrides=settings, environ={})
    prepare_database(config)
    register_templates(config, load_template_directory(TEMPLATE_DIRECTORY))
    register_templates(config, load_template_directory(FAILURE_TEMPLATES))
    cluster = InProcessCluster(config)
    yield cluster
    cluster.close()


@pytest.fixture
def client(api_cluster: InProcessCluster) -> Iterator[TaskerClient]:
    with TaskerClient(api_cluster.url) as client:
        yield client
