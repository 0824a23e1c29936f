"""Handlers that fail on purpose, for the failure-handling acceptance tests (function style)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tasker.handlers import PermanentError, RetryableError, StepContext, depends_on, step_handler


@step_handler("failures.flaky")
def flaky(context: StepContext) -> dict[str, Any]:
    """Fails (retryably) on its first `fail_times` attempts, then succeeds."""
    if context.retry_count < context.get_input("fail_times"):
        raise RetryableError(f"transient failure on attempt {context.retry_count + 1}")
    return {"result": context.retry_count + 1}


@step_handler("failures.echo")
@depends_on(parent="flaky")
def after_flaky(parent: Any) -> dict[str, Any]:
    return {"result": parent}


@step_handler("failures.refuse")
def refuse(context: StepContext) -> dict[str, Any]:
    raise PermanentError("this input can never be processed")


@step_handler("failures.never")
def never(context: StepContext) -> dict[str, Any]:
    raise AssertionError("a step after a permanent failure must never run")


@step_handler("failures.gate")
def gate(context: StepContext) -> dict[str, Any]:
    """Fails permanently until the file named in the context exists."""
    if not Path(context.get_input("gate_file")).exists():
        raise PermanentError("the gate is closed")
    return {"result": 21}


@step_handler("failures.double")
@depends_on(value="gate")
def double(value: int) -> dict[str, Any]:
    return {"result": value * 2}


@step_handler("failures.slow")
def slow(context: StepContext) -> dict[str, Any]:
    time.sleep(context.get_input("sleep_seconds"))
    return {"result": "slept"}


@step_handler("failures.after_slow")
def after_slow(context: StepContext) -> dict[str, Any]:
    return {"result": "after"}


@step_handler("failures.wait_at_gate")
def wait_at_gate(context: StepContext) -> dict[str, Any]:
    """Notes its run in the context's `runs_file`, then waits for `gate_file` to exist."""
    with Path(context.get_input("runs_file")).open("a") as runs:
        runs.write(f"{context.step_name}\n")
    gate = Path(context.get_input("gate_file"))
    deadline = time.monotonic() + 30
    while not gate.exists():
        if time.monotonic() > deadline:
            raise PermanentError("the gate never opened")
        time.sleep(0.05)
    return {"result": context.step_name}
