"""Domain events with real processes on each broker: a step's declared events reach the
durable events queue after its outcome (not after an attempt that is retried), one JSON
`DomainEvent` per message, and a failing publication (here an in-process subscriber that
raises) never fails the step."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import pytest

from tasker.cli.cluster import LocalCluster
from tasker.cli.commands import register_templates
from tasker.client import TaskerClient
from tasker.messaging.backends import broker_from_config
from tasker.messaging.broker import Broker
from tasker.state.templates import load_template_directory
from tests.acceptance.conftest import BROKERS, cluster_config

TEMPLATES = Path(__file__).parent / "event_templates"
HANDLERS = "tests.acceptance.handlers_events"
#: A `DomainEvent`'s fields, as the README documents them.
EVENT_FIELDS = {
    "name", "task_uuid", "step_uuid", "step_name", "namespace", "status", "payload",
    "correlation_id", "occurred_at",
}  # fmt: skip


class EventsCluster:
    """A running cluster, its API client, and a consumer of its events queue."""

    def __init__(self, client: TaskerClient, broker: Broker, queue: str) -> None:
        self.client = client
        self.broker = broker
        self.queue = queue

    def run(self, context: dict[str, Any], correlation_id: str) -> Any:
        task_uuid = self.client.create_task(
            "events", "payment_workflow", "1.0.0", context, correlation_id=correlation_id
        )
        return self.client.wait(task_uuid, timeout=60)

    def events_of(self, task_uuid: UUID, count: int) -> list[dict[str, Any]]:
        """The task's events from the queue, once `count` arrived and a pause brought no
        more (so an extra event would be seen); other tasks' events are dropped."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            received = self._receive()
            found += [event for event in received if event["task_uuid"] == str(task_uuid)]
            if len(found) >= count and not received:
                break
        return found

    def _receive(self) -> list[dict[str, Any]]:
        deliveries = self.broker.receive(self.queue, max_messages=10, wait=1.0)
        for delivery in deliveries:
            self.broker.ack(delivery)
        return [msgspec.json.decode(delivery.body) for delivery in deliveries]


@pytest.fixture(scope="module", params=BROKERS)
def events(
    request: pytest.FixtureRequest, make_database: Callable[[], str]
) -> Iterator[EventsCluster]:
    config = cluster_config(request, request.param, make_database)
    register_templates(config, load_template_directory(TEMPLATES))
    broker = broker_from_config(config)
    broker.ensure_queue(config.events_queue)
    cluster = LocalCluster(config, namespaces="events", handler_modules=HANDLERS)
    client = TaskerClient(config)
    with cluster:
        yield EventsCluster(client, broker, config.events_queue)
    client.close()
    broker.close()
    assert all(code == 0 for code in cluster.exit_codes.values()), cluster.exit_codes


def _by_name(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {event["name"]: event for event in events}


def test_a_success_queues_its_success_and_always_events_as_documented(
    events: EventsCluster,
) -> None:
    # Given a step declaring events, one of which has a subscriber that raises
    started = datetime.now(UTC)

    # When the step succeeds at its second attempt
    task = events.run({"amount": 12, "flaky": True}, correlation_id="order-12")
    queued = events.events_of(task.task_uuid, 3)

    # Then the task is unaffected by the raising subscriber ...
    assert task.status == "complete"
    charge = next(step for step in task.steps if step.name == "charge")
    assert (charge.results, charge.attempts) == ({"receipt_id": "r-12"}, 2)
    # ... and each success or always event is queued once (none for the retried attempt),
    # with the documented fields
    assert sorted(e["name"] for e in queued) == [
        "payment.attempted", "payment.audited", "payment.charged",
    ]  # fmt: skip
    event = _by_name(queued)["payment.charged"]
    assert set(event) == EVENT_FIELDS
    assert {key: event[key] for key in EVENT_FIELDS - {"occurred_at"}} == {
        "name": "payment.charged",
        "task_uuid": str(task.task_uuid),
        "step_uuid": str(charge.step_uuid),
        "step_name": "charge",
        "namespace": "events",
        "status": "success",
        "payload": {"receipt_id": "r-12"},
        "correlation_id": "order-12",
    }
    assert started <= datetime.fromisoformat(event["occurred_at"]) <= datetime.now(UTC)
    assert {(e["status"], str(e["payload"])) for e in queued} == {
        ("success", "{'receipt_id': 'r-12'}")
    }


def test_a_failure_queues_its_failure_and_always_events(events: EventsCluster) -> None:
    # When the step fails for good at its first attempt (of two allowed)
    task = events.run({"amount": 5, "decline": True}, correlation_id="order-5")
    queued = events.events_of(task.task_uuid, 2)

    # Then only the failure and always events are queued, carrying the error message
    assert task.status == "error"
    assert sorted(e["name"] for e in queued) == ["payment.attempted", "payment.failed"]
    assert {(e["status"], e["payload"], e["correlation_id"]) for e in queued} == {
        ("failure", "card declined", "order-5")
    }
