"""What each `tasker` subcommand does; argument parsing lives in `main`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

from tasker.cli import render
from tasker.config import Config, load_config
from tasker.messaging.backends import broker_from_config
from tasker.runtime import configure_logging
from tasker.state.admission import TaskRejectedError
from tasker.state.errors import StateError
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
    from tasker.actors.orchestrator import run_orchestrator
    from tasker.state.db import Database

    config = config_from(args)
    configure_logging(config, role="orchestrator")
    if config.template_path:
        register_templates(config, load_template_directory(config.template_path, env=config.env))
    database = Database(config.database_url, max_size=config.database_pool_size)
    broker = broker_from_config(config)
    try:
        return run_orchestrator(config, broker, database)
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
    configure_logging(config, role="worker")
    broker = broker_from_config(config)
    try:
        return run_worker(config, broker)
    finally:
        broker.close()


def worker_list(args: argparse.Namespace) -> int:
    import psycopg

    from tasker.state.db import Database
    from tasker.state.repository import StateRepository

    database = Database(config_from(args).database_url, max_size=1)
    try:
        workers = StateRepository(database).list_workers()
    except psycopg.errors.UndefinedTable as exc:
        raise CommandError("no worker registry in this database; run 'tasker db migrate'") from exc
    finally:
        database.close()
    print(render.workers(workers, args.output))
    return 0


def _split(value: str | None) -> list[str] | None:
    return [item.strip() for item in value.split(",") if item.strip()] if value else None


def task_create(args: argparse.Namespace) -> int:
    from tasker.client import TaskerClient

    context = _parse_context(args.context)
    client = TaskerClient(config_from(args))
    try:
        task_uuid = client.create_task(args.namespace, args.name, args.version, context)
        if not args.wait:
            print(json.dumps({"task_uuid": str(task_uuid)}) if args.output == "json" else task_uuid)
            return 0
        progress = None if args.output == "json" else render.progress_printer(sys.stderr)
        view = client.wait(task_uuid, timeout=args.timeout, on_progress=progress)
    except (StateError, TaskRejectedError, TimeoutError) as exc:
        raise CommandError(str(exc)) from exc
    finally:
        client.close()
    print(render.task(view, args.output))
    return 0 if view.status == "complete" else 1


def _parse_context(text: str) -> dict[str, Any]:
    try:
        context = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--context is not valid JSON: {exc}") from exc
    if not isinstance(context, dict):
        raise CommandError("--context must be a JSON object, e.g. '{\"even_number\": 2}'")
    return context


def task_get(args: argparse.Namespace) -> int:
    from tasker.client import TaskerClient

    try:
        task_uuid = UUID(args.task_uuid)
    except ValueError as exc:
        raise CommandError(f"{args.task_uuid!r} is not a task UUID") from exc
    client = TaskerClient(config_from(args))
    try:
        view = client.get_task(task_uuid)
    except StateError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        client.close()
    print(render.task(view, args.output))
    return 0


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


def demo(args: argparse.Namespace) -> int:
    from tasker.cli.demo import run_demo

    return run_demo(args.workflows or ["linear", "diamond"], config_from(args))
