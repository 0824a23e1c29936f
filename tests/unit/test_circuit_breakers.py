"""Circuit breakers: a failing broker or database makes callers fail fast, then recovers."""

from __future__ import annotations

import time
from collections.abc import Sequence

import psycopg
import pytest

from tasker.config import load_config
from tasker.messaging.broker import BrokerError, Transaction
from tasker.messaging.circuit import GuardedBroker, counts_against_broker
from tasker.messaging.memory import InMemoryBroker
from tasker.resilience import breaker_state, circuit_breaker
from tasker.state.db import counts_against_database

CONFIG = load_config(
    environ={"TASKER_CIRCUIT_FAILURE_THRESHOLD": "2", "TASKER_CIRCUIT_RESET_TIMEOUT_SECONDS": "0.2"}
)


class FlakyBroker(InMemoryBroker):
    """An in-memory broker whose sends fail while `down` is set."""

    down = False
    calls = 0

    def send_batch(
        self,
        queue: str,
        bodies: Sequence[bytes],
        *,
        delay: float = 0.0,
        within: Transaction | None = None,
    ) -> None:
        self.calls += 1
        if self.down:
            raise BrokerError("connection refused")
        super().send_batch(queue, bodies, delay=delay, within=within)


def test_the_broker_circuit_opens_after_repeated_failures_and_fails_fast() -> None:
    inner = FlakyBroker()
    inner.ensure_queue("q")
    broker = GuardedBroker(inner, circuit_breaker("broker", CONFIG, counts_against_broker))
    inner.down = True

    for _ in range(2):
        with pytest.raises(BrokerError):
            broker.send("q", b"{}")
    calls_when_opened = inner.calls
    with pytest.raises(BrokerError, match="circuit 'broker' is open") as raised:
        broker.send("q", b"{}")

    assert raised.value.recoverable
    assert inner.calls == calls_when_opened  # failed fast: the broker was not called
    assert breaker_state(broker.breaker) == "open"


def test_the_broker_circuit_closes_again_after_a_successful_trial() -> None:
    inner = FlakyBroker()
    inner.ensure_queue("q")
    broker = GuardedBroker(inner, circuit_breaker("broker", CONFIG, counts_against_broker))
    inner.down = True
    for _ in range(2):
        with pytest.raises(BrokerError):
            broker.send("q", b"{}")

    inner.down = False
    time.sleep(0.25)  # the reset timeout: the next call is the half-open trial
    broker.send("q", b"{}")

    assert breaker_state(broker.breaker) == "closed"
    assert len(broker.receive("q", max_messages=5)) == 1


def test_a_callers_mistake_does_not_count_against_the_broker() -> None:
    assert not counts_against_broker(BrokerError("no such queue", recoverable=False))
    assert counts_against_broker(BrokerError("connection reset"))


def test_only_infrastructure_errors_count_against_the_database() -> None:
    assert counts_against_database(psycopg.OperationalError("server closed the connection"))
    assert not counts_against_database(psycopg.errors.UniqueViolation("duplicate key"))
    assert not counts_against_database(ValueError("bad input"))
