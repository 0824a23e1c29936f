"""The backend table: names and URL schemes pick a broker; anything else is refused."""

from __future__ import annotations

from typing import Any

import pytest

from tasker.config import Config
from tasker.messaging.backends import (
    BACKEND_NAMES,
    broker_from_config,
    create_broker,
    resolve_backend,
)
from tasker.messaging.broker import Broker, BrokerError
from tasker.messaging.memory import InMemoryBroker
from tasker.messaging.pgmq import PgmqBroker


def create(name_or_url: str, **options: Any) -> Broker:
    return create_broker(
        name_or_url,
        database_url="postgresql://db/tasker",
        rabbitmq_url="amqp://mq/%2F",
        **options,
    )


@pytest.mark.parametrize(
    ("name_or_url", "backend", "url"),
    [
        ("pgmq", "pgmq", ""),
        ("rabbitmq", "rabbitmq", ""),
        ("memory", "memory", ""),
        ("postgresql://h/db", "pgmq", "postgresql://h/db"),
        ("postgres://h/db", "pgmq", "postgres://h/db"),
        ("amqp://h/%2F", "rabbitmq", "amqp://h/%2F"),
        ("amqps://h/%2F", "rabbitmq", "amqps://h/%2F"),
        ("memory://", "memory", "memory://"),
    ],
)
def test_names_and_url_schemes_pick_a_backend(name_or_url: str, backend: str, url: str) -> None:
    assert resolve_backend(name_or_url) == (backend, url)


@pytest.mark.parametrize("name_or_url", ["kafka", "sqs://queue", "", "PGMQ", "redis://h"])
def test_unknown_backend_is_refused_naming_the_valid_ones(name_or_url: str) -> None:
    with pytest.raises(BrokerError) as raised:
        create(name_or_url)

    assert repr(name_or_url) in str(raised.value)
    for name in BACKEND_NAMES:
        assert name in str(raised.value)
    assert not raised.value.recoverable


def test_memory_backend_takes_the_delivery_limit() -> None:
    broker = create("memory", max_deliveries=7)

    assert isinstance(broker, InMemoryBroker)
    assert broker.max_deliveries == 7


def test_pgmq_by_name_connects_to_the_database_url_without_connecting_yet() -> None:
    broker = create("pgmq", poll_interval=0.5)

    assert isinstance(broker, PgmqBroker)
    assert (broker.database_url, broker.poll_interval) == ("postgresql://db/tasker", 0.5)
    broker.close()


def test_a_url_overrides_the_configured_one() -> None:
    broker = create("postgresql://elsewhere/db")

    assert isinstance(broker, PgmqBroker)
    assert broker.database_url == "postgresql://elsewhere/db"
    broker.close()


def test_config_chooses_the_broker() -> None:
    config = Config(broker="memory", max_deliveries=9)

    broker = broker_from_config(config)

    assert isinstance(broker, InMemoryBroker)
    assert broker.max_deliveries == 9
