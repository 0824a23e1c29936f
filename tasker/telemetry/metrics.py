"""Metrics with Tasker's names (`tasker.tasks.*`, `tasker.steps.*`, `tasker.queue.*`,
`tasker.dlq.*`), as OpenTelemetry instruments; the orchestrator serves them on /metrics.

The instruments are created on the global (proxy) meter, so recording is a no-op until
`configure_metrics` installs a provider; then they export to a Prometheus registry.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

log = logging.getLogger(__name__)

_meter = metrics.get_meter("tasker")

TASKS_REQUESTED = _meter.create_counter(
    "tasker.tasks.requests", description="Task creation requests, by outcome"
)
TASKS_CREATED = _meter.create_counter("tasker.tasks.created", description="Tasks created")
TASKS_COMPLETED = _meter.create_counter("tasker.tasks.completed", description="Tasks complete")
TASKS_FAILED = _meter.create_counter("tasker.tasks.failed", description="Tasks ended in error")
TASK_INIT_DURATION = _meter.create_histogram(
    "tasker.tasks.initialization.duration", unit="s", description="Task initialization time"
)
STEPS_ENQUEUED = _meter.create_counter("tasker.steps.enqueued", description="Steps enqueued")
STEPS_COMPLETED = _meter.create_counter("tasker.steps.completed", description="Steps complete")
STEPS_FAILED = _meter.create_counter("tasker.steps.failed", description="Steps in error")
STEPS_RETRIED = _meter.create_counter(
    "tasker.steps.retried", description="Failed attempts that will be retried"
)
STEP_DURATION = _meter.create_histogram(
    "tasker.steps.execution.duration", unit="s", description="Handler run time per attempt"
)
RESULT_DURATION = _meter.create_histogram(
    "tasker.steps.result_processing.duration", unit="s", description="Applying one result"
)

_STEP_OUTCOMES = {
    "complete": STEPS_COMPLETED,
    "error": STEPS_FAILED,
    "waiting_for_retry": STEPS_RETRIED,
}


def task_created(namespace: str, seconds: float) -> None:
    TASKS_CREATED.add(1, {"namespace": namespace})
    TASK_INIT_DURATION.record(seconds, {"namespace": namespace})


def task_finished(status: str | None) -> None:
    if status == "complete":
        TASKS_COMPLETED.add(1)
    elif status == "error":
        TASKS_FAILED.add(1)


def steps_enqueued(namespace: str, count: int) -> None:
    STEPS_ENQUEUED.add(count, {"namespace": namespace})


def step_result(
    step_state: str | None, started_at: datetime, finished_at: datetime, seconds: float
) -> None:
    """A worker's result was applied: count the outcome, record both durations."""
    counter = _STEP_OUTCOMES.get(step_state or "")
    if counter is not None:
        counter.add(1)
    STEP_DURATION.record(max((finished_at - started_at).total_seconds(), 0.0))
    RESULT_DURATION.record(seconds)


Reading = Iterable[tuple[float, dict[str, str]]]


def observe(name: str, description: str, read: Callable[[], Reading]) -> None:
    """A gauge read at scrape time (queue depths...); a failing read reports nothing."""

    def callback(options: CallbackOptions) -> Iterable[Observation]:
        try:
            return [Observation(value, attributes) for value, attributes in read()]
        except Exception as exc:
            log.warning("metric %s could not be read: %s", name, exc)
            return []

    _meter.create_observable_gauge(name, callbacks=[callback], description=description)


class PrometheusMetrics:
    """The process's metrics in Prometheus text format (installed once per process)."""

    _lock = threading.Lock()
    _instance: PrometheusMetrics | None = None

    def __init__(self) -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry()
        reader = PrometheusMetricReader(registry=self.registry)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    @classmethod
    def install(cls) -> PrometheusMetrics:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    content_type: Any = "text/plain; version=0.0.4; charset=utf-8"
