"""A throwaway database (and RabbitMQ vhost) per benchmark run, dropped afterwards.

Left behind, each run's vhost keeps its quorum queues open: a few runs exhaust a small
RabbitMQ node's file handles and every later connection times out in the handshake.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from tasker.cli.commands import prepare_database, register_templates
from tasker.config import Config, load_config
from tasker.state.templates import load_template_directory

ADMIN_URL = os.environ.get("TASKER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
RABBITMQ_URL = os.environ.get("TASKER_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


Prepare = Callable[[Config, Path], None]


def prepare_here(config: Config, templates: Path) -> None:
    """Migrate and register templates with the engine this process imports."""
    prepare_database(config)
    register_templates(config, load_template_directory(templates))


@contextmanager
def scratch_config(
    broker: str, templates: Path, *, prepare: Prepare = prepare_here, **settings: Any
) -> Iterator[Config]:
    """A migrated, empty database (and vhost) with `templates` registered; dropped after.
    `prepare` migrates it: another checkout's engine brings its own migrations."""
    name = f"tasker_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    overrides: dict[str, Any] = {
        "database_url": ADMIN_URL.rsplit("/", 1)[0] + f"/{name}",
        "broker": broker,
        **settings,
    }
    if broker == "rabbitmq":
        _rabbitmqctl("add_vhost", name)
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        overrides["rabbitmq_url"] = RABBITMQ_URL.rsplit("/", 1)[0] + "/" + quote(name, safe="")
    try:
        config = load_config(overrides=overrides, environ={})
        prepare(config, templates)
        yield config
    finally:
        if broker == "rabbitmq":
            _rabbitmqctl("delete_vhost", name)
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)
