"""Shared fixtures: real services, each test session on its own fresh database.

A test that needs a service it cannot reach is skipped locally with a loud reason, and
FAILS when `CI` is set: CI must prove both brokers every time.
"""

from __future__ import annotations

import os
import subprocess
import uuid
import warnings
from collections.abc import Callable, Iterator
from urllib.parse import quote

import psycopg
import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "TASKER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
RABBITMQ_URL = os.environ.get("TASKER_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def service_unavailable(service: str, error: BaseException) -> None:
    """Skip (locally) or fail (in CI) a test whose service cannot be reached."""
    reason = f"{service} is NOT reachable, so this test did not run: {error}"
    if os.environ.get("CI"):
        pytest.fail(f"CI requires {service}: {reason}")
    warnings.warn(reason, stacklevel=2)
    pytest.skip(reason)


def _database_url(name: str) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[psycopg.Connection[object]]:
    try:
        connection = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        service_unavailable("PostgreSQL", exc)
    with connection:
        yield connection


@pytest.fixture(scope="session")
def make_database(postgres_admin: psycopg.Connection[object]) -> Iterator[Callable[[], str]]:
    """Factory of fresh, empty databases (dropped at the end of the session)."""
    created: list[str] = []

    def make() -> str:
        name = f"tasker_t_{uuid.uuid4().hex[:12]}"
        postgres_admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return _database_url(name)

    yield make
    for name in created:
        postgres_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def empty_database_url(make_database: Callable[[], str]) -> str:
    """One fresh database shared by the session's tests that only need PostgreSQL."""
    return make_database()


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    import pika

    try:
        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    except Exception as exc:
        service_unavailable("RabbitMQ", exc)
    connection.close()
    return RABBITMQ_URL


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def make_vhost(rabbitmq_url: str) -> Callable[[pytest.FixtureRequest], str]:
    """Factory of fresh RabbitMQ virtual hosts; returns an AMQP URL for each.

    A vhost is deleted, queues and all, when `owner` (the test or fixture that asked for it)
    ends: quorum queues hold file handles, and a session's worth of them left open until
    the end exhausted a small node's limit (927), after which every handshake timed out.
    """

    def make(owner: pytest.FixtureRequest) -> str:
        name = f"tasker_t_{uuid.uuid4().hex[:12]}"
        try:
            _rabbitmqctl("add_vhost", name)
            owner.addfinalizer(lambda: _delete_vhost(name))
            _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        except (OSError, subprocess.SubprocessError) as exc:
            service_unavailable("rabbitmqctl (to create a test vhost)", exc)
        return f"{rabbitmq_url.rsplit('/', 1)[0]}/{quote(name, safe='')}"

    return make


def _delete_vhost(name: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], capture_output=True, timeout=60)
