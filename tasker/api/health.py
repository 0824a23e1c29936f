"""/health (live, ready, detailed), /metrics and /v1/workers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec

from tasker.api import schemas
from tasker.api.auth import requires
from tasker.api.common import services
from tasker.api.errors import responses
from tasker.api.services import ApiServices
from tasker.messaging.messages import (
    ORCHESTRATION_RESULTS_QUEUE,
    ORCHESTRATION_TASK_REQUESTS_QUEUE,
    worker_queue,
)
from tasker.telemetry.metrics import PrometheusMetrics, observe

VERSION = "0.1.0"


def _check(probe: Callable[[], object]) -> schemas.Check:
    started = time.perf_counter()
    try:
        probe()
    except Exception as exc:
        elapsed = (time.perf_counter() - started) * 1000
        return schemas.Check("unhealthy", f"{type(exc).__name__}: {exc}", elapsed)
    return schemas.Check("healthy", "", (time.perf_counter() - started) * 1000)


def readiness(svc: ApiServices) -> dict[str, schemas.Check]:
    return {
        "database": _check(svc.reads.ping),
        "broker": _check(lambda: svc.broker.queue_stats(ORCHESTRATION_TASK_REQUESTS_QUEUE)),
    }


def _overall(checks: dict[str, schemas.Check]) -> Any:
    healthy = all(check.status == "healthy" for check in checks.values())
    return "healthy" if healthy else "unhealthy"


def queue_names(svc: ApiServices) -> list[str]:
    names = [ORCHESTRATION_TASK_REQUESTS_QUEUE, ORCHESTRATION_RESULTS_QUEUE]
    return names + [worker_queue(ns) for ns in svc.reads.namespaces()]


def queue_depths(svc: ApiServices) -> list[schemas.QueueDepth]:
    depths = []
    for name in queue_names(svc):
        stats = svc.broker.queue_stats(name)
        depths.append(schemas.QueueDepth(name, stats.ready, stats.in_flight))
    return depths


def circuit_breakers(svc: ApiServices) -> dict[str, str]:
    """State of the process's breakers (broker, database), where they are installed."""
    from tasker.resilience import breaker_state

    database = getattr(svc.orchestrator, "database", None)
    found = {
        "broker": getattr(svc.broker, "breaker", None),
        "database": getattr(database, "breaker", None),
    }
    return {name: breaker_state(breaker) for name, breaker in found.items() if breaker is not None}


def workers(svc: ApiServices) -> list[schemas.WorkerInfo]:
    found = svc.repository.list_workers()
    return [msgspec.convert(msgspec.to_builtins(w), schemas.WorkerInfo) for w in found]


class HealthRoutes(Controller):
    tags = ["system"]

    @get("/health", summary="Overall status", sync_to_thread=True)
    def health(self, state: State) -> schemas.Health:
        return schemas.Health("healthy")

    @get("/health/live", summary="The process is up", sync_to_thread=False)
    def live(self) -> schemas.Health:
        return schemas.Health("healthy")

    @get(
        "/health/ready",
        summary="Database and broker reachable (503 otherwise)",
        responses={503: ResponseSpec(data_container=schemas.Health, description="not ready")},
        sync_to_thread=True,
    )
    def ready(self, state: State) -> Response[schemas.Health]:
        checks = readiness(services(state))
        status = _overall(checks)
        code = 200 if status == "healthy" else 503
        return Response(schemas.Health(status, checks), status_code=code)

    @get(
        "/health/detailed",
        guards=[requires("system:read")],
        responses=responses(),
        sync_to_thread=True,
        summary="Components, queue depths and workers",
    )
    def detailed(self, state: State) -> schemas.DetailedHealth:
        svc = services(state)
        checks = readiness(svc)
        healthy = _overall(checks) == "healthy"
        return schemas.DetailedHealth(
            status=_overall(checks),
            checks=checks,
            queues=queue_depths(svc) if healthy else [],
            workers=workers(svc) if healthy else [],
            circuit_breakers=circuit_breakers(svc),
            version=VERSION,
            uptime_seconds=round(time.monotonic() - svc.started_at, 3),
        )

    @get(
        "/metrics",
        guards=[requires("system:read")],
        responses=responses(),
        media_type=PrometheusMetrics.content_type,
        sync_to_thread=True,
        summary="Prometheus text format",
    )
    def metrics(self) -> bytes:
        return PrometheusMetrics.install().render()

    @get(
        "/v1/workers",
        guards=[requires("system:read")],
        responses=responses(),
        sync_to_thread=True,
        summary="Workers, from their latest heartbeats",
    )
    def worker_list(self, state: State) -> schemas.WorkerList:
        return schemas.WorkerList(workers(services(state)))


def register_gauges(svc: ApiServices) -> None:
    """Gauges read at scrape time: queue depths and dead letter entries."""

    def depths() -> list[tuple[float, dict[str, str]]]:
        return [
            (float(count), {"queue": depth.queue, "state": state})
            for depth in queue_depths(svc)
            for state, count in (("ready", depth.ready), ("in_flight", depth.in_flight))
        ]

    def dead_letters() -> list[tuple[float, dict[str, str]]]:
        by_status = svc.dead_letters().stats().by_status
        return [(float(count), {"status": status}) for status, count in by_status.items()]

    observe("tasker.queue.depth", "Messages per queue, ready or in flight", depths)
    observe("tasker.dlq.entries", "Dead letter entries by status", dead_letters)
