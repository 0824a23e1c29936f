"""The `tasker` subcommands that talk to the REST API (task, dlq, template list/show,
worker list, health), through `tasker.client.TaskerClient`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tasker.api import schemas
from tasker.cli import render
from tasker.cli.commands import CommandError, config_from
from tasker.client import TaskerApiError, TaskerClient, TaskerConnectionError, task_id


@contextmanager
def client_for(args: argparse.Namespace) -> Iterator[TaskerClient]:
    """A client of the API named by --url / TASKER_API_URL; API errors become CommandErrors."""
    config = config_from(args, api_url=args.url, api_key=args.api_key, api_token=args.token)
    client = TaskerClient(config.client_api_url, config.api_key, config.api_token)
    try:
        yield client
    except (TaskerApiError, TaskerConnectionError, TimeoutError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    finally:
        client.close()


def _json_arg(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{option} is not valid JSON: {exc}") from exc


def task_create(args: argparse.Namespace) -> int:
    context = _json_arg(args.context, "--context")
    if not isinstance(context, dict):
        raise CommandError("--context must be a JSON object, e.g. '{\"even_number\": 2}'")
    request = schemas.TaskCreate(
        name=args.name, namespace=args.namespace, version=args.version, context=context,
        initiator=args.initiator, reason=args.reason, tags=args.tag or [],
        priority=args.priority, correlation_id=args.correlation_id,
        idempotency_key=args.idempotency_key, source_system="tasker-cli",
    )  # fmt: skip
    with client_for(args) as client:
        task = client.submit(request)
        if not args.wait:
            print(render.task(task, args.output))
            return 0
        progress = render.progress_printer(sys.stderr) if args.output != "json" else None
        task = client.wait(task, timeout=args.timeout, on_progress=progress)
    print(render.task(task, args.output))
    return 0 if task.status == "complete" else 1


def task_get(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        task = client.get_task(args.task_uuid)
    print(render.task(task, args.output, dag=True))
    return 0


def task_list(args: argparse.Namespace) -> int:
    filters = {"namespace": args.namespace, "status": args.status, "name": args.name}
    with client_for(args) as client:
        found = client.list_tasks(page=args.page, per_page=args.per_page, **filters)
    print(render.task_list(found, args.output))
    return 0


def task_cancel(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        task = client.cancel_task(args.task_uuid, args.reason)
    print(render.task(task, args.output))
    return 0


def task_steps(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        found = client.steps(args.task_uuid)
    print(render.steps(found, args.output))
    return 0


def _step_command(action: schemas.StepAction) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        fields: dict[str, Any] = {"reason": args.reason, "resolved_by": args.by}
        if action == "complete_manually":
            fields["completion_data"] = _json_arg(args.result, "--result")
        with client_for(args) as client:
            step_uuid = _step_uuid(client, args.task_uuid, args.step)
            step = client.step_action(args.task_uuid, step_uuid, action, **fields)
        print(render.step(step, args.output))
        return 0

    return run


def _step_uuid(client: TaskerClient, task: str, step: str) -> str:
    """A step given by UUID or by name."""
    for found in client.steps(task):
        if step in (str(found.step_uuid), found.name):
            return str(found.step_uuid)
    raise CommandError(f"task {task_id(task)} has no step {step!r}")


task_reset_step = _step_command("reset_for_retry")
task_resolve_step = _step_command("resolve_manually")
task_complete_step = _step_command("complete_manually")


def task_audit(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        step = _step_uuid(client, args.task_uuid, args.step) if args.step else None
        found = client.audit(args.task_uuid, step)
    print(render.audit(found, args.output))
    return 0


def dlq_list(args: argparse.Namespace) -> int:
    filters = {"status": args.status, "reason": args.reason}
    with client_for(args) as client:
        found = client.dlq_list(page=args.page, per_page=args.per_page, **filters)
    print(render.as_json(found) if args.output == "json" else render.dlq_entries(found.entries, ""))
    return 0


def dlq_get(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        entry = client.dlq_get(args.entry_uuid)
    print(render.as_json(entry))
    return 0


def dlq_update(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        entry = client.dlq_update(
            args.entry_uuid, args.status, resolution_notes=args.notes, resolved_by=args.by
        )
    print(render.as_json(entry) if args.output == "json" else f"{entry.entry_uuid}: {entry.status}")
    return 0


def dlq_stats(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        stats = client.dlq_stats()
    if args.output == "json":
        print(render.as_json(stats))
    else:
        rows = [(status, count) for status, count in sorted(stats.by_status.items())]
        print(f"{stats.total} entries\n" + render.table(["STATUS", "COUNT"], rows, ""))
    return 0


def template_list(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        found = client.list_templates(args.namespace)
    print(render.templates(found, args.output))
    return 0


def template_show(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        found = client.get_template(args.namespace, args.name, args.version)
    print(render.template(found, args.output))
    return 0


def worker_list(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        found = client.workers()
    print(render.workers(found, args.output))
    return 0


def health(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        found = client.health()
    print(render.health(found, args.output))
    return 0 if found.status == "healthy" else 1
