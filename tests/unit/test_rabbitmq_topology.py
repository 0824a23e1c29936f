"""RabbitMQ backend pieces that need no server: names, delay buckets, error classes."""

from __future__ import annotations

import math

import pika
import pika.exceptions as px
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasker.messaging.broker import BrokerError
from tasker.messaging.rabbitmq_connection import classify, describe
from tasker.messaging.rabbitmq_topology import (
    DELIVERY_COUNT_HEADER,
    MAIN_QUEUE_ARGUMENTS,
    QUORUM_DELIVERY_COUNT_HEADER,
    delay_bucket_ms,
    message_properties,
    previous_deliveries,
    validate_queue_name,
)


@pytest.mark.parametrize("name", ["worker_payments_queue", "orchestration_step_results", "a-b_1"])
def test_plain_queue_names_are_accepted(name: str) -> None:
    assert validate_queue_name(name) == name


@pytest.mark.parametrize("name", ["", "q.lease.x", "amq.gen", "with space", "x" * 201, "é"])
def test_names_that_could_collide_or_break_are_refused(name: str) -> None:
    with pytest.raises(BrokerError, match="invalid queue name") as refused:
        validate_queue_name(name)
    assert not refused.value.recoverable


@given(st.floats(min_value=0, max_value=7 * 24 * 3600))
def test_delay_bucket_is_never_early_and_at_most_a_few_percent_late(seconds: float) -> None:
    exact = math.ceil(seconds * 1000)
    bucket = delay_bucket_ms(seconds)
    assert exact <= bucket <= exact + max(1, exact // 25)


def test_delays_share_a_bounded_number_of_buckets() -> None:
    buckets = {delay_bucket_ms(ms / 1000) for ms in range(1, 600_000, 7)}
    assert len(buckets) < 32 * 20


@pytest.mark.parametrize("seconds", [-1.0, math.inf, math.nan])
def test_invalid_delays_are_refused(seconds: float) -> None:
    with pytest.raises(BrokerError):
        delay_bucket_ms(seconds)


def test_delivery_count_travels_in_a_header() -> None:
    assert previous_deliveries(message_properties(3)) == 3
    assert previous_deliveries(message_properties(0)) == 0
    assert previous_deliveries(None) == 0


@pytest.mark.parametrize(
    ("headers", "previous"),
    [
        ({QUORUM_DELIVERY_COUNT_HEADER: 2}, 2),  # requeued twice by the quorum queue
        ({DELIVERY_COUNT_HEADER: 3, QUORUM_DELIVERY_COUNT_HEADER: 1}, 4),  # both add up
        ({DELIVERY_COUNT_HEADER: 3}, 3),  # a republished copy, not redelivered since
        ({QUORUM_DELIVERY_COUNT_HEADER: 0}, 0),
        ({DELIVERY_COUNT_HEADER: -1, QUORUM_DELIVERY_COUNT_HEADER: "x"}, 0),  # garbage
        ({DELIVERY_COUNT_HEADER: True}, 0),
    ],
)
def test_previous_deliveries_add_our_header_and_the_quorum_count(
    headers: dict[str, object], previous: int
) -> None:
    assert previous_deliveries(pika.BasicProperties(headers=headers)) == previous


def test_main_and_dead_letter_queues_are_quorum_queues() -> None:
    assert MAIN_QUEUE_ARGUMENTS == {"x-queue-type": "quorum"}


def test_an_old_classic_queue_gets_an_upgrade_hint() -> None:
    error = px.ChannelClosedByBroker(
        406, "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q'"
    )
    assert classify(error) is False
    assert "old classic layout" in describe(error)


@pytest.mark.parametrize(
    ("error", "recoverable"),
    [
        (px.ConnectionClosedByBroker(320, "CONNECTION_FORCED"), True),
        (px.StreamLostError("EOF"), True),
        (px.AMQPConnectionError("refused"), True),
        (px.ChannelWrongStateError("closed"), True),
        (px.ChannelClosedByBroker(406, "delivery acknowledgement on channel 1 timed out"), True),
        (ConnectionResetError(), True),
        (px.ChannelClosedByBroker(404, "NOT_FOUND - no queue 'q'"), False),
        (px.ChannelClosedByBroker(406, "PRECONDITION_FAILED - inequivalent arg"), False),
        (px.ProbableAuthenticationError("bad password"), False),
        (px.UnroutableError([]), False),
        (px.ReentrancyError(), False),
        (ValueError("not a broker failure"), None),
    ],
)
def test_errors_are_classified_recoverable_or_not(
    error: BaseException, recoverable: bool | None
) -> None:
    assert classify(error) is recoverable
