"""`tasker`: run the orchestrator and workers, migrate the database, create and read tasks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tasker.cli import commands
from tasker.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tasker", description=__doc__)
    parser.add_argument("--config", help="TOML config file (also TASKER_CONFIG)")
    parser.add_argument("--database-url", help="PostgreSQL URL (TASKER_DATABASE_URL)")
    parser.add_argument("--broker", help="pgmq | rabbitmq (TASKER_BROKER)")
    parser.add_argument("--rabbitmq-url", help="AMQP URL (TASKER_RABBITMQ_URL)")
    parser.add_argument("--template-path", help="directory of template YAML files")
    parser.add_argument("--env", help="environment whose template overrides apply (TASKER_ENV)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING... (TASKER_LOG_LEVEL)")
    commands_ = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_db(commands_)
    _add_processes(commands_)
    _add_task(commands_)
    _add_template(commands_)
    demo = commands_.add_parser("demo", help="run the example workflows end to end")
    demo.add_argument("workflows", nargs="*", help="example names (default: linear diamond)")
    demo.set_defaults(run=commands.demo)
    return parser


def _add_db(commands_: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands_.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    db.add_parser("migrate", help="apply pending migrations (idempotent)").set_defaults(
        run=commands.db_migrate
    )


def _add_processes(commands_: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands_.add_parser("orchestrator", help="run an orchestrator process").set_defaults(
        run=commands.orchestrator
    )
    worker = commands_.add_parser("worker", help="run a worker process")
    worker.add_argument("--namespace", help="comma-separated namespaces to serve")
    worker.add_argument("--handlers", help="comma-separated modules holding handlers")
    worker.add_argument("--concurrency", type=int, help="handlers running at once")
    worker.add_argument("--compat", help="compatibility layers, e.g. tasker-core")
    worker.set_defaults(run=commands.worker)
    # `tasker worker` alone runs a worker; `tasker worker list` shows the registered ones.
    actions = worker.add_subparsers(dest="worker_action", metavar="ACTION")
    listing = actions.add_parser("list", help="list workers from their latest heartbeats")
    listing.add_argument("--output", choices=("table", "json"), default="table")
    listing.set_defaults(run=commands.worker_list)


def _add_task(commands_: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    task = commands_.add_parser("task", help="create and inspect tasks")
    actions = task.add_subparsers(dest="task", required=True)
    create = actions.add_parser("create", help="create a task from a registered template")
    create.add_argument("namespace")
    create.add_argument("name")
    create.add_argument("--version", default="1.0.0")
    create.add_argument("--context", default="{}", help="the task context, as JSON")
    create.add_argument("--wait", action="store_true", help="wait and print the final task")
    create.add_argument("--timeout", type=float, default=120.0, help="seconds to wait")
    create.add_argument("--output", choices=("table", "json"), default="table")
    create.set_defaults(run=commands.task_create)
    get = actions.add_parser("get", help="show a task and its steps")
    get.add_argument("task_uuid")
    get.add_argument("--output", choices=("table", "json"), default="table")
    get.set_defaults(run=commands.task_get)


def _add_template(commands_: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    template = commands_.add_parser("template", help="task templates")
    actions = template.add_subparsers(dest="template", required=True)
    validate = actions.add_parser("validate", help="check template files (offline)")
    validate.add_argument("paths", nargs="+")
    validate.set_defaults(run=commands.template_validate)
    register = actions.add_parser("register", help="register template files in the database")
    register.add_argument("paths", nargs="+")
    register.set_defaults(run=commands.template_register)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"tasker: {exc}", file=sys.stderr)
        return 2
    except commands.CommandError as exc:
        print(f"tasker: {exc}", file=sys.stderr)
        return 1
