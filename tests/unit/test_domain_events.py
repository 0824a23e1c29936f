"""Domain events: published after a step's outcome per its declarations, to in-process
subscribers and durably to a queue, and never failing the step."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import msgspec
import pytest

from tasker.events import DomainEvent, EventPublisher, settles_step, subscribe
from tasker.messaging.memory import InMemoryBroker
from tasker.messaging.messages import HandlerSpec, StepMessage

QUEUE = "tasker_domain_events"


def _message(*events: Any) -> StepMessage:
    return StepMessage(
        task_uuid=uuid4(), step_uuid=uuid4(), namespace="shop", task_name="order",
        task_version="1.0.0", step_name="charge", handler=HandlerSpec("shop.charge"),
        attempt=1, max_attempts=3, retryable=True, input_data={},
        publishes_events=list(events), correlation_id="order-7",
    )  # fmt: skip


def test_a_success_publishes_the_declared_events_to_subscribers_and_the_queue() -> None:
    broker = InMemoryBroker()
    received: list[DomainEvent] = []
    unsubscribe = subscribe("payment.charged", received.append)
    message = _message("payment.charged", {"name": "payment.failed", "condition": "failure"})

    try:
        EventPublisher(broker, QUEUE).after_outcome(message, True, {"receipt": "r-1"})
    finally:
        unsubscribe()

    assert [(e.name, e.payload, e.correlation_id) for e in received] == [
        ("payment.charged", {"receipt": "r-1"}, "order-7"),
    ]
    [delivery] = broker.receive(QUEUE, max_messages=10)
    queued = msgspec.json.decode(delivery.body, type=DomainEvent)
    assert (queued.name, queued.status, queued.step_uuid) == (
        "payment.charged", "success", message.step_uuid,
    )  # fmt: skip


def test_a_failure_publishes_only_failure_and_always_events() -> None:
    broker = InMemoryBroker()
    message = _message(
        "payment.charged",
        {"name": "payment.failed", "condition": "failure"},
        {"name": "payment.attempted", "condition": "always"},
    )

    EventPublisher(broker, QUEUE).after_outcome(message, False, "card declined")

    names = {
        msgspec.json.decode(d.body, type=DomainEvent).name
        for d in broker.receive(QUEUE, max_messages=10)
    }
    assert names == {"payment.failed", "payment.attempted"}


def test_a_failing_subscriber_or_broker_never_raises() -> None:
    broker = InMemoryBroker()
    broker.close()  # every send now fails

    def explode(event: DomainEvent) -> None:
        raise RuntimeError("subscriber bug")

    unsubscribe = subscribe("*", explode)
    try:
        EventPublisher(broker, QUEUE).after_outcome(_message("payment.charged"), True, None)
    finally:
        unsubscribe()


@pytest.mark.parametrize(
    ("success", "retryable", "attempt", "yielded", "settles"),
    [
        (True, True, 1, False, True),  # a success decides the step
        (False, True, 1, False, False),  # a failure that will be retried does not
        (False, True, 3, False, True),  # ... unless it was the last attempt
        (False, False, 1, False, True),  # ... or the failure is permanent
        (False, True, 1, True, False),  # a batch worker's checkpoint yield never does
    ],
)
def test_events_follow_only_the_attempt_that_decides_the_step(
    success: bool, retryable: bool, attempt: int, yielded: bool, settles: bool
) -> None:
    message = msgspec.structs.replace(_message(), attempt=attempt)  # of 3 attempts

    assert settles_step(message, success, retryable=retryable, yielded=yielded) is settles
