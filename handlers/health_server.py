"""A worker's own health endpoint, for container probes (`worker_health_bind`).

Workers serve no API, so a container platform has nothing to probe; this stdlib HTTP server
answers on a daemon thread:

- `GET /health/live`: 200 while the process serves requests (a hung or dead process does not);
- `GET /health/ready`: 200 while the worker consumes, 503 once it is stopping (draining);
- `GET /health`: the same as ready.

The body is JSON: `{"status": "healthy" | "unhealthy", "worker_id": ..., "in_flight": n}`.
It is off unless `worker_health_bind` is set (several workers on one host would need one port
each; systemd restarts a dead worker without any probe).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tasker.config import host_port

log = logging.getLogger(__name__)


class WorkerHealth:
    """What the endpoint reports; the callables are read on each request."""

    def __init__(
        self,
        *,
        worker_id: str,
        ready: Callable[[], bool],
        in_flight: Callable[[], int],
    ) -> None:
        self.worker_id = worker_id
        self.ready = ready
        self.in_flight = in_flight

    def body(self, healthy: bool) -> dict[str, object]:
        return {
            "status": "healthy" if healthy else "unhealthy",
            "worker_id": self.worker_id,
            "in_flight": self.in_flight(),
        }


class HealthServer:
    """Serves `health` on `bind` (host:port; port 0 picks a free one) until `close()`."""

    def __init__(self, bind: str, health: WorkerHealth) -> None:
        host, port = host_port(bind, setting="worker_health_bind")
        self._server = ThreadingHTTPServer((host, port), _handler_for(health))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="tasker-worker-health", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("worker health endpoint on http://%s:%d/health", *self.address)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_worker_health(bind: str | None, health: WorkerHealth) -> HealthServer | None:
    """Start the endpoint when `bind` is set; None when it is not."""
    return HealthServer(bind, health).start() if bind else None


def _handler_for(health: WorkerHealth) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "tasker-worker-health"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/health/live":
                self._reply(200, health.body(True))
            elif path in ("/health/ready", "/health"):
                ready = _safely(health.ready)
                self._reply(200 if ready else 503, health.body(ready))
            else:
                self._reply(404, {"status": "not found", "path": self.path})

        def _reply(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("health request: " + format, *args)

    return Handler


def _safely(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:
        log.warning("worker readiness check failed", exc_info=True)
        return False
