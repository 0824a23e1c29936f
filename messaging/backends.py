"""The one table that turns configuration into a Broker.

A backend is named (`pgmq`, `rabbitmq`, `memory`) or given as a URL whose scheme picks it;
a URL is then also where that backend connects. Each backend module is imported only when
chosen, so a process never loads a client library it does not use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit

from tasker.messaging.broker import Broker, BrokerError


class BrokerSettings(Protocol):
    """The settings `broker_from_config` reads (`tasker.config.Config` has them all)."""

    @property
    def broker(self) -> str: ...
    @property
    def database_url(self) -> str: ...
    @property
    def rabbitmq_url(self) -> str: ...
    @property
    def max_deliveries(self) -> int: ...
    @property
    def poll_interval_seconds(self) -> float: ...


class _Options(NamedTuple):
    url: str
    max_deliveries: int
    poll_interval: float


def _pgmq(options: _Options) -> Broker:
    from tasker.messaging.pgmq import PgmqBroker

    return PgmqBroker(
        options.url, max_deliveries=options.max_deliveries, poll_interval=options.poll_interval
    )


def _rabbitmq(options: _Options) -> Broker:
    from tasker.messaging.rabbitmq import RabbitMQBroker

    return RabbitMQBroker(options.url, max_deliveries=options.max_deliveries)


def _memory(options: _Options) -> Broker:
    from tasker.messaging.memory import InMemoryBroker

    return InMemoryBroker(max_deliveries=options.max_deliveries)


_BACKENDS: dict[str, Callable[[_Options], Broker]] = {
    "pgmq": _pgmq,
    "rabbitmq": _rabbitmq,
    "memory": _memory,
}

_SCHEMES = {
    "postgresql": "pgmq",
    "postgres": "pgmq",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "memory": "memory",
}

BACKEND_NAMES = tuple(_BACKENDS)


def create_broker(
    name_or_url: str,
    *,
    database_url: str,
    rabbitmq_url: str,
    max_deliveries: int = 5,
    poll_interval: float = 1.0,
) -> Broker:
    """The broker `name_or_url` names; a URL overrides `database_url`/`rabbitmq_url`."""
    name, url = resolve_backend(name_or_url)
    default_url = {"pgmq": database_url, "rabbitmq": rabbitmq_url}.get(name, "")
    return _BACKENDS[name](_Options(url or default_url, max_deliveries, poll_interval))


def broker_from_config(config: BrokerSettings) -> Broker:
    """The broker a process's configuration asks for."""
    return create_broker(
        config.broker,
        database_url=config.database_url,
        rabbitmq_url=config.rabbitmq_url,
        max_deliveries=config.max_deliveries,
        poll_interval=config.poll_interval_seconds,
    )


def resolve_backend(name_or_url: str) -> tuple[str, str]:
    """(backend name, URL given with it or '') for a backend name or a URL."""
    if name_or_url in _BACKENDS:
        return name_or_url, ""
    scheme = urlsplit(name_or_url).scheme if "://" in name_or_url else ""
    if scheme in _SCHEMES:
        return _SCHEMES[scheme], name_or_url
    raise BrokerError(
        f"unknown broker {name_or_url!r}: use one of {', '.join(BACKEND_NAMES)}, or a URL "
        f"with scheme {', '.join(s + '://' for s in _SCHEMES)}",
        recoverable=False,
    )
