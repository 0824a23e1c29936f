"""How the CLI shows tasks: a table for people, JSON for machines."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TextIO

import msgspec

from tasker.state.records import TaskView


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
