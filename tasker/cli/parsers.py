"""Argument parsers of the API subcommands (task, dlq, template, worker list, health)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from tasker.cli import api_commands as api

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
STATUSES = (
    "pending", "initializing", "enqueuing_steps", "steps_in_process", "evaluating_results",
    "waiting_for_dependencies", "waiting_for_retry", "blocked_by_failures", "complete",
    "error", "cancelled", "resolved_manually",
)  # fmt: skip
DLQ_STATUSES = ("pending", "manually_resolved", "permanently_failed", "cancelled")


def api_options() -> argparse.ArgumentParser:
    """--url/--api-key/--token/--output, accepted after the subcommand too."""
    common = argparse.ArgumentParser(add_help=False)
    suppress: Any = argparse.SUPPRESS  # keeps a value given before the subcommand
    common.add_argument("--url", default=suppress, help="API base URL (TASKER_API_URL)")
    common.add_argument("--api-key", default=suppress, help="API key (TASKER_API_KEY)")
    common.add_argument("--token", default=suppress, help="JWT bearer token (TASKER_API_TOKEN)")
    common.add_argument("--output", choices=("table", "json"), default="table")
    return common


def add_task(commands: Subparsers) -> None:
    common = api_options()
    task = commands.add_parser("task", help="create, inspect and fix tasks")
    actions = task.add_subparsers(dest="task", required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=[common], help="create a task")
    create.add_argument("namespace")
    create.add_argument("name")
    create.add_argument("--version", default="1.0.0")
    create.add_argument("--context", default="{}", help="the task context, as JSON")
    create.add_argument("--wait", action="store_true", help="show progress, print the result")
    create.add_argument("--timeout", type=float, default=120.0, help="seconds to wait")
    create.add_argument("--initiator")
    create.add_argument("--reason")
    create.add_argument("--tag", action="append", help="a tag (repeatable)")
    create.add_argument("--priority", type=int, default=0)
    create.add_argument("--correlation-id")
    create.add_argument("--idempotency-key")
    create.set_defaults(run=api.task_create)
    _with_task(actions, common, "get", "a task, its steps and its DAG", api.task_get)
    listing = actions.add_parser("list", parents=[common], help="list tasks, newest first")
    listing.add_argument("--namespace")
    listing.add_argument("--name")
    listing.add_argument("--status", choices=STATUSES)
    _paging(listing)
    listing.set_defaults(run=api.task_list)
    cancel = _with_task(actions, common, "cancel", "cancel a task", api.task_cancel)
    cancel.add_argument("--reason")
    _with_task(actions, common, "steps", "a task's steps", api.task_steps)
    _add_step_actions(actions, common)
    audit = _with_task(actions, common, "audit", "transitions and operator actions", api.task_audit)
    audit.add_argument("--step", help="one step (UUID or name)")


def _with_task(
    actions: Subparsers, common: argparse.ArgumentParser, name: str, help_: str, run: Any
) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, parents=[common], help=help_)
    parser.add_argument("task_uuid")
    parser.set_defaults(run=run)
    return parser


def _add_step_actions(actions: Subparsers, common: argparse.ArgumentParser) -> None:
    for name, help_, run in (
        ("reset-step", "give a failed step fresh attempts", api.task_reset_step),
        ("resolve-step", "mark a step resolved; dependents run", api.task_resolve_step),
        ("complete-step", "complete a step with a result", api.task_complete_step),
    ):
        parser = _with_task(actions, common, name, help_, run)
        parser.add_argument("step", help="step UUID or name")
        parser.add_argument("--reason", default="")
        parser.add_argument("--by", default="operator", help="who acts (recorded)")
        if name == "complete-step":
            parser.add_argument("--result", default="{}", help="the result, as JSON")


def _paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--page", type=int, default=1)
    parser.add_argument("--per-page", type=int, default=25)


def add_dlq(commands: Subparsers) -> None:
    common = api_options()
    dlq = commands.add_parser("dlq", help="the dead letter queue")
    actions = dlq.add_subparsers(dest="dlq", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="entries, newest first")
    listing.add_argument("--status", choices=DLQ_STATUSES)
    listing.add_argument("--reason")
    _paging(listing)
    listing.set_defaults(run=api.dlq_list)
    get = actions.add_parser("get", parents=[common], help="one entry with its snapshot")
    get.add_argument("entry_uuid")
    get.set_defaults(run=api.dlq_get)
    update = actions.add_parser("update", parents=[common], help="record a conclusion")
    update.add_argument("entry_uuid")
    update.add_argument("--status", choices=DLQ_STATUSES, required=True)
    update.add_argument("--notes")
    update.add_argument("--by", default="operator")
    update.set_defaults(run=api.dlq_update)
    stats = actions.add_parser("stats", parents=[common], help="counts by status")
    stats.set_defaults(run=api.dlq_stats)


def add_template_api(actions: Subparsers) -> None:
    common = api_options()
    listing = actions.add_parser("list", parents=[common], help="registered templates")
    listing.add_argument("--namespace")
    listing.set_defaults(run=api.template_list)
    show = actions.add_parser("show", parents=[common], help="a template and its DAG")
    show.add_argument("namespace")
    show.add_argument("name")
    show.add_argument("--version", default="1.0.0")
    show.set_defaults(run=api.template_show)


def add_worker_list(actions: Subparsers) -> None:
    listing = actions.add_parser("list", parents=[api_options()], help="registered workers")
    listing.set_defaults(run=api.worker_list)


def add_health(commands: Subparsers) -> None:
    health = commands.add_parser("health", parents=[api_options()], help="system health")
    health.set_defaults(run=api.health)
