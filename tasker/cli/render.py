"""How the CLI shows tasks: a table for people, JSON for machines."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TextIO

import msgspec

from tasker.state.records import TaskView, WorkerRecord


def task_as_dict(view: TaskView) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(view)
    data["completion_percentage"] = round(view.completion_percentage, 1)
    return data


def task(view: TaskView, output: str) -> str:
    if output == "json":
        return json.dumps(task_as_dict(view), indent=2)
    return _table(view)


def _table(view: TaskView) -> str:
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


def progress_printer(stream: TextIO) -> Callable[[TaskView], None]:
    """A callback that prints a task's progress line whenever it changes."""
    last: list[str] = []

    def show(view: TaskView) -> None:
        running = [s.name for s in view.steps if s.current_state in ("enqueued", "in_progress")]
        line = (
            f"  {view.name}: {view.completed_steps}/{view.total_steps} steps done, "
            f"{view.status}" + (f" (running: {', '.join(running)})" if running else "")
        )
        if not last or last[-1] != line:
            last.append(line)
            print(line, file=stream, flush=True)

    return show


def workers(records: list[WorkerRecord], output: str) -> str:
    """Registered workers: a table for people, a JSON list for machines."""
    if output == "json":
        return json.dumps(msgspec.to_builtins(records), indent=2)
    header = (
        f"{'WORKER':<40} {'HOST':<16} {'PID':>7} {'NAMESPACES':<20} {'IN-FLIGHT':>9} "
        f"{'STATUS':<9} {'LAST BEAT':>9} ALIVE"
    )
    rows = [
        f"{w.worker_id:<40} {w.host:<16} {w.pid:>7} {','.join(w.namespaces):<20} "
        f"{f'{w.in_flight}/{w.concurrency}':>9} {w.status:<9} "
        f"{f'{w.heartbeat_age_seconds:.1f}s':>9} {'yes' if w.alive else 'NO'}"
        for w in records
    ]
    return "\n".join([header, *rows]) if rows else "no workers have registered yet"
