"""`task create --wait`'s live progress: a bar of steps done and the running steps' names.

On a terminal the line redraws in place; otherwise a new line is written when it changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from tasker.api.schemas import Task

RUNNING_STATES = ("enqueued", "in_progress", "enqueued_for_orchestration")
WIDTH = 24


def bar(done: int, total: int, width: int = WIDTH) -> str:
    filled = width * done // total if total else width
    return "#" * filled + "." * (width - filled)


def line(task: Task) -> str:
    running = [s.name for s in task.steps if s.current_state in RUNNING_STATES]
    text = (
        f"{task.name} [{bar(task.completed_steps, task.total_steps)}] "
        f"{task.completed_steps}/{task.total_steps} steps  {task.status}"
    )
    return text + (f"  running: {', '.join(running)}" if running else "")


def progress_printer(stream: TextIO) -> Callable[[Task], None]:
    """A callback that shows a task's progress whenever it changes."""
    interactive = stream.isatty()
    last: list[str] = []

    def show(task: Task) -> None:
        text = line(task)
        if last and last[-1] == text:
            return
        last.append(text)
        if interactive:
            end = "\n" if task.status in ("complete", "error", "cancelled") else ""
            print(f"\r\x1b[2K{text}", end=end, file=stream, flush=True)
        else:
            print(f"  {text}", file=stream, flush=True)

    return show
