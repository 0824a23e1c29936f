"""Handlers of the domain-events acceptance test.

Importing this module also subscribes, in the worker process, a subscriber that always
raises on `payment.audited`, as a buggy in-process subscriber would.
"""

from __future__ import annotations

from typing import Any

from tasker.events import DomainEvent, subscribe
from tasker.handlers import PermanentError, RetryableError, StepContext, depends_on, step_handler


@step_handler("events.charge")
def charge(context: StepContext) -> dict[str, Any]:
    """Declines (for good) when the task context says so; with `flaky`, fails its first
    attempt retryably; otherwise returns a receipt id."""
    if context.get_input_or("decline", False):
        raise PermanentError("card declined")
    if context.get_input_or("flaky", False) and context.attempt == 1:
        raise RetryableError("card network timeout")
    return {"receipt_id": f"r-{context.get_input('amount')}"}


@step_handler("events.receipt")
@depends_on(payment="charge")
def receipt(payment: dict[str, Any]) -> dict[str, Any]:
    return {"sent": payment["receipt_id"]}


def _broken_subscriber(event: DomainEvent) -> None:
    raise RuntimeError(f"subscriber bug while handling {event.name}")


subscribe("payment.audited", _broken_subscriber)
