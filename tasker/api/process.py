"""The orchestrator process with its API: actors, pumps, supervisor and the HTTP server."""

from __future__ import annotations

import logging
import signal

from tasker.actors.orchestrator import Orchestrator
from tasker.api.server import ApiServer, ApiServerError
from tasker.api.services import ApiServices
from tasker.config import Config
from tasker.messaging.broker import Broker
from tasker.state.db import Database
from tasker.state.repository import StateRepository
from tasker.telemetry.metrics import PrometheusMetrics

log = logging.getLogger(__name__)

#: Connections the API may hold, apart from the actors' pool.
API_POOL_SIZE = 4


def run_orchestrator_with_api(config: Config, broker: Broker, database: Database) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or until a component dies (non-zero)."""
    PrometheusMetrics.install()
    orchestrator = Orchestrator(config, broker, database)
    supervisor = orchestrator.start()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: supervisor.request_stop())
    api_database = Database(config.database_url, max_size=API_POOL_SIZE)
    server = None
    try:
        if config.api_enabled:
            reads = StateRepository(api_database)  # API reads never take the actors' pool
            server = ApiServer(ApiServices(config, api_database, broker, reads, orchestrator))
            server.start()
        log.info("orchestrator running (broker %s)", config.broker)
        code = supervisor.watch()
    except ApiServerError as exc:
        log.error("%s", exc)
        code = 1
    finally:
        if server is not None:
            server.stop()
        orchestrator.stop()
        api_database.close()
    log.info("orchestrator stopped (exit %d)", code)
    return code
