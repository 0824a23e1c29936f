"""Serving the API with uvicorn on a thread of the orchestrator process."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn

from tasker.api.app import build_app
from tasker.api.health import register_gauges
from tasker.api.services import ApiServices
from tasker.config import api_host_port

log = logging.getLogger(__name__)


class ApiServerError(RuntimeError):
    """The API could not start (e.g. its port is taken); the message says where."""


class ApiServer:
    def __init__(self, services: ApiServices) -> None:
        host, port = api_host_port(services.config.api_bind)
        self.services = services
        register_gauges(services)
        config = uvicorn.Config(
            build_app(services), host=host, port=port, log_level="warning", access_log=False,
            lifespan="on", timeout_graceful_shutdown=5,
            http="httptools",  # C parser (a dependency): pure-Python h11 costs CPU per request
            loop="auto",  # uvloop where it is installed (not on Windows)
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="tasker-api", daemon=True)
        self.bind = f"{host}:{port}"

    def _serve(self) -> None:
        try:
            self._server.run()
        except SystemExit:  # uvicorn exits this way when it cannot bind
            log.error("the API server on %s stopped at start", self.bind)

    def start(self, timeout: float = 15.0) -> None:
        """Start serving; return once it accepts connections, or raise ApiServerError."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ApiServerError(
                    f"the API could not start on {self.bind} (TASKER_API_BIND); is it in use?"
                )
            time.sleep(0.02)
        log.info("API listening on http://%s", self.bind)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
