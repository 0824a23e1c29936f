"""What each `tasker` subcommand does; argument parsing lives in `main`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from tasker.config import Config, load_config, redacted
from tasker.messaging.backends import broker_from_config
from tasker.runtime import configure_logging, configure_telemetry
from tasker.state.templates import (
    TaskTemplate,
    TemplateError,
    load_template_directory,
    load_template_file,
)

log = logging.getLogger(__name__)


class CommandError(Exception):
    """A command cannot do what was asked; the message says why."""


def config_from(args: argparse.Namespace, **extra: Any) -> Config:
    overrides = {
        "database_url": args.database_url,
        "broker": args.broker,
        "rabbitmq_url": args.rabbitmq_url,
        "template_path": args.template_path,
        "env": args.env,
        "log_level": args.log_level,
        **extra,
    }
    return load_config(config_file=args.config, overrides=overrides)


def db_migrate(args: argparse.Namespace) -> int:
    config = config_from(args)
    configure_logging(config, role="migrate")
    prepare_database(config)
    return 0


def prepare_database(config: Config) -> None:
    """Apply migrations and, on the PGMQ broker, install PGMQ (both idempotent)."""
    from tasker.state.migrate import migrate

    applied = migrate(config.database_url)
    log.info("database migrated (%d new migration(s))", len(applied))
    if config.broker == "pgmq":
        from tasker.messaging.pgmq_install import install_pgmq

        install_pgmq(config.database_url)


def register_templates(config: Config, templates: list[TaskTemplate]) -> None:
    from tasker.state.db import Database
    from tasker.state.repository import StateRepository

    database = Database(config.database_url, max_size=1)
    try:
        repository = StateRepository(database)
        for template in templates:
            repository.register_template(template)
            log.info("registered template %s", template.identity)
    finally:
        database.close()


def orchestrator(args: argparse.Namespace) -> int:
    from tasker.api.process import run_orchestrator_with_api
    from tasker.state.db import Database

    config = config_from(args)
    configure_telemetry(config, role="orchestrator")
    if config.template_path:
        register_templates(config, load_template_directory(config.template_path, env=config.env))
    database = Database(config.database_url, max_size=config.database_pool_size)
    broker = broker_from_config(config)
    try:
        return run_orchestrator_with_api(config, broker, database)
    finally:
        broker.close()
        database.close()


def worker(args: argparse.Namespace) -> int:
    from tasker.handlers.worker import run_worker

    extra = {
        "namespaces": _split(args.namespace),
        "handlers": _split(args.handlers),
        "concurrency": args.concurrency,
        "compat": _split(args.compat),
    }
    config = config_from(args, **extra)
    configure_telemetry(config, role="worker")
    broker = broker_from_config(config)
    try:
        return run_worker(config, broker)
    finally:
        broker.close()


def _split(value: str | None) -> list[str] | None:
    return [item.strip() for item in value.split(",") if item.strip()] if value else None


def template_validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in map(Path, args.paths):
        try:
            templates = _load(path, env=None)
        except TemplateError as exc:
            print(exc, file=sys.stderr)
            failed += 1
            continue
        for template in templates:
            print(f"ok  {path}: {template.identity} ({len(template.steps)} steps)")
    return 1 if failed else 0


def template_register(args: argparse.Namespace) -> int:
    config = config_from(args)
    configure_logging(config, role="cli")
    try:
        templates = [t for path in map(Path, args.paths) for t in _load(path, env=config.env)]
    except TemplateError as exc:
        raise CommandError(str(exc)) from exc
    register_templates(config, templates)
    return 0


def _load(path: Path, *, env: str | None) -> list[TaskTemplate]:
    if path.is_dir():
        return load_template_directory(path, env=env)
    return [load_template_file(path, env=env)]


def config_show(args: argparse.Namespace) -> int:
    """The settings in force (file, TASKER_* variables, flags), secrets masked."""
    shown = redacted(config_from(args))
    if args.output == "json":
        print(json.dumps(shown, indent=2))
    else:
        print("\n".join(f"{name} = {json.dumps(value)}" for name, value in shown.items()))
    return 0


def config_validate(args: argparse.Namespace) -> int:
    """Exit 0 if the settings are valid (a ConfigError names the bad one otherwise)."""
    config = config_from(args)
    if config.auth_enabled:
        from tasker.api.auth import Authenticator

        Authenticator(config)  # checks keys and JWT settings
    print(f"ok  configuration valid (broker {config.broker}, API {config.client_api_url})")
    return 0


def demo(args: argparse.Namespace) -> int:
    from tasker.cli.demo import run_demo

    return run_demo(args.workflows or ["linear", "diamond"], config_from(args))
