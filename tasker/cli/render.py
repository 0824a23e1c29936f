"""How the CLI shows things: tables and DAGs for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec

from tasker.api import schemas
from tasker.cli.dag import draw
from tasker.cli.progress import progress_printer

__all__ = ["as_json", "progress_printer", "table", "task", "template"]


def as_json(value: Any) -> str:
    return json.dumps(msgspec.to_builtins(value), indent=2)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], empty: str = "none") -> str:
    """Columns as wide as their widest cell."""
    if not rows:
        return empty
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines
    )


def task(view: schemas.Task, output: str, *, dag: bool = False) -> str:
    if output == "json":
        return as_json(view)
    text = _task_table(view)
    if dag:
        graph = draw([(s.name, s.dependencies, s.current_state) for s in view.steps])
        text += "\n\nDAG\n" + graph
    return text


def _task_table(view: schemas.Task) -> str:
    elapsed = ""
    if view.completed_at is not None:
        elapsed = f" in {(view.completed_at - view.created_at).total_seconds() * 1000:.0f} ms"
    lines = [
        f"task {view.task_uuid}  {view.namespace}/{view.name}@{view.version}",
        f"status {view.status}{elapsed}  ({view.completed_steps}/{view.total_steps} steps done)",
        f"context {json.dumps(view.context)}",
        "",
        f"{'STEP':<24} {'STATE':<22} {'ATTEMPTS':<9} RESULT",
    ]
    for step in view.steps:
        outcome = step.results if step.current_state == "complete" else step.last_error
        lines.append(
            f"{step.name:<24} {step.current_state:<22} "
            f"{f'{step.attempts}/{step.max_attempts}':<9} {json.dumps(outcome)}"
        )
    return "\n".join(lines)


def task_list(found: schemas.TaskList, output: str) -> str:
    if output == "json":
        return as_json(found)
    rows = [
        (t.task_uuid, f"{t.namespace}/{t.name}@{t.version}", t.status,
         f"{t.completed_steps}/{t.total_steps}", t.created_at.isoformat(timespec="seconds"))
        for t in found.tasks
    ]  # fmt: skip
    page = found.pagination
    footer = f"\npage {page.page}/{page.total_pages} ({page.total_count} tasks)"
    return table(["TASK", "TEMPLATE", "STATUS", "STEPS", "CREATED"], rows, "no tasks") + footer


def steps(found: list[schemas.Step], output: str) -> str:
    if output == "json":
        return as_json(found)
    rows = [
        (s.step_uuid, s.name, s.current_state, f"{s.attempts}/{s.max_attempts}",
         "yes" if s.ready_for_execution else "no", ",".join(s.dependencies) or "-")
        for s in found
    ]  # fmt: skip
    return table(["STEP", "NAME", "STATE", "ATTEMPTS", "READY", "AFTER"], rows)


def step(found: schemas.Step, output: str) -> str:
    if output == "json":
        return as_json(found)
    return f"step {found.step_uuid} {found.name}: {found.current_state}"


def audit(found: schemas.Audit, output: str) -> str:
    if output == "json":
        return as_json(found)
    transitions = [
        (t.created_at.isoformat(timespec="milliseconds"), t.from_state or "-", t.to_state,
         json.dumps(t.metadata) if t.metadata else "")
        for t in found.transitions
    ]  # fmt: skip
    actions = [
        (a.created_at.isoformat(timespec="seconds"), a.action, a.actor, a.reason, a.step_uuid)
        for a in found.operator_actions
    ]
    return "\n\n".join(
        [
            table(["AT", "FROM", "TO", "METADATA"], transitions, "no transitions"),
            "operator actions:\n"
            + table(["AT", "ACTION", "BY", "REASON", "STEP"], actions, "none"),
        ]
    )


def template(found: schemas.TemplateDetail, output: str) -> str:
    if output == "json":
        return as_json(found)
    header = f"template {found.namespace}/{found.name}@{found.version}"
    description = f"\n{found.description}" if found.description else ""
    rows = [(s.name, s.handler, s.type, ",".join(s.dependencies) or "-") for s in found.steps]
    graph = draw([(s.name, s.dependencies, None) for s in found.steps])
    steps_table = table(["STEP", "HANDLER", "TYPE", "AFTER"], rows)
    return f"{header}{description}\n\n{steps_table}\n\nDAG\n{graph}"


def templates(found: schemas.TemplateList, output: str) -> str:
    if output == "json":
        return as_json(found)
    rows = [(t.namespace, t.name, t.version, t.step_count, t.description) for t in found.templates]
    return table(["NAMESPACE", "NAME", "VERSION", "STEPS", "DESCRIPTION"], rows, "no templates")


def dlq_entries(entries: list[schemas.DlqEntry], output: str) -> str:
    if output == "json":
        return as_json(entries)
    rows = [
        (e.entry_uuid, e.task_uuid, e.reason, e.status, e.created_at.isoformat(timespec="seconds"))
        for e in entries
    ]
    return table(["ENTRY", "TASK", "REASON", "STATUS", "CREATED"], rows, "no entries")


def workers(records: list[schemas.WorkerInfo], output: str) -> str:
    if output == "json":
        return as_json(records)
    rows = [
        (w.worker_id, w.host, w.pid, ",".join(w.namespaces), f"{w.in_flight}/{w.concurrency}",
         w.status, f"{w.heartbeat_age_seconds:.1f}s", "yes" if w.alive else "NO")
        for w in records
    ]  # fmt: skip
    headers = ["WORKER", "HOST", "PID", "NAMESPACES", "IN-FLIGHT", "STATUS", "LAST BEAT", "ALIVE"]
    return table(headers, rows, "no workers have registered yet")


def health(found: schemas.DetailedHealth, output: str) -> str:
    if output == "json":
        return as_json(found)
    checks = [
        (name, c.status, f"{c.duration_ms:.1f} ms", c.message) for name, c in found.checks.items()
    ]
    queues = [(q.queue, q.ready, q.in_flight) for q in found.queues]
    alive = sum(w.alive for w in found.workers)
    return "\n\n".join(
        [
            f"status {found.status}  (version {found.version}, up {found.uptime_seconds:.0f}s)",
            table(["COMPONENT", "STATUS", "LATENCY", "MESSAGE"], checks),
            table(["QUEUE", "READY", "IN-FLIGHT"], queues, "no queues"),
            f"workers: {alive} alive of {len(found.workers)} known",
        ]
    )
