"""`tasker`: run the orchestrator and workers, migrate the database, and operate tasks
through the orchestrator's REST API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tasker.cli import commands, parsers
from tasker.config import ConfigError

if TYPE_CHECKING:
    from tasker.cli.parsers import Subparsers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tasker", description=__doc__)
    parser.add_argument("--config", help="TOML config file (also TASKER_CONFIG)")
    parser.add_argument("--database-url", help="PostgreSQL URL (TASKER_DATABASE_URL)")
    parser.add_argument("--broker", help="pgmq | rabbitmq (TASKER_BROKER)")
    parser.add_argument("--rabbitmq-url", help="AMQP URL (TASKER_RABBITMQ_URL)")
    parser.add_argument("--template-path", help="directory of template YAML files")
    parser.add_argument("--env", help="environment whose template overrides apply (TASKER_ENV)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING... (TASKER_LOG_LEVEL)")
    parser.add_argument("--url", help="the API's base URL (TASKER_API_URL)")
    parser.add_argument("--api-key", help="API key (TASKER_API_KEY)")
    parser.add_argument("--token", help="JWT bearer token (TASKER_API_TOKEN)")
    commands_ = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_db(commands_)
    _add_processes(commands_)
    parsers.add_task(commands_)
    _add_template(commands_)
    parsers.add_dlq(commands_)
    _add_config(commands_)
    parsers.add_health(commands_)
    demo = commands_.add_parser("demo", help="run the example workflows end to end")
    demo.add_argument("workflows", nargs="*", help="example names (default: linear diamond)")
    demo.set_defaults(run=commands.demo)
    return parser


def _add_db(commands_: Subparsers) -> None:
    db = commands_.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    db.add_parser("migrate", help="apply pending migrations (idempotent)").set_defaults(
        run=commands.db_migrate
    )


def _add_processes(commands_: Subparsers) -> None:
    commands_.add_parser(
        "orchestrator", help="run an orchestrator process (and its API)"
    ).set_defaults(run=commands.orchestrator)
    worker = commands_.add_parser("worker", help="run a worker process")
    worker.add_argument("--namespace", help="comma-separated namespaces to serve")
    worker.add_argument("--handlers", help="comma-separated modules holding handlers")
    worker.add_argument("--concurrency", type=int, help="handlers running at once")
    worker.add_argument("--compat", help="compatibility layers, e.g. tasker-core")
    worker.set_defaults(run=commands.worker)
    # `tasker worker` alone runs a worker; `tasker worker list` shows the registered ones.
    parsers.add_worker_list(worker.add_subparsers(dest="worker_action", metavar="ACTION"))


def _add_template(commands_: Subparsers) -> None:
    template = commands_.add_parser("template", help="task templates")
    actions = template.add_subparsers(dest="template", required=True, metavar="ACTION")
    validate = actions.add_parser("validate", help="check template files (offline)")
    validate.add_argument("paths", nargs="+")
    validate.set_defaults(run=commands.template_validate)
    register = actions.add_parser("register", help="register template files in the database")
    register.add_argument("paths", nargs="+")
    register.set_defaults(run=commands.template_register)
    parsers.add_template_api(actions)


def _add_config(commands_: Subparsers) -> None:
    config = commands_.add_parser("config", help="the settings in force")
    actions = config.add_subparsers(dest="config_action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="print the settings (secrets masked)")
    show.add_argument("--output", choices=("table", "json"), default="table")
    show.set_defaults(run=commands.config_show)
    actions.add_parser("validate", help="check the settings").set_defaults(
        run=commands.config_validate
    )


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
