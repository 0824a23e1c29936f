"""A pykka actor that never lets an exception escape.

Pykka stops an actor when an exception escapes `on_receive` for a `tell`; one bad message
must not take the orchestrator down. Each subclass maps message types to handlers; a failing
handler is logged and its message's delivery handed back to the broker for a later retry.
On its last allowed delivery, a message that still fails (and not because the database or
broker is down) is a poison message: with a quarantine, it is dead-lettered at once with
the failure as its reason and recorded against its task (see `poison.py`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any

import msgspec
import pykka

from tasker.actors.poison import Quarantine, is_outage
from tasker.messaging.broker import Broker, Delivery

log = logging.getLogger(__name__)

#: Seconds before a message whose processing failed is offered again.
RETRY_DELAY_SECONDS = 1.0


class HandlingFailed(msgspec.Struct, frozen=True):
    """The reply an asker gets when handling its message failed (the actor lives on)."""

    reason: str


class GuardedActor(pykka.ThreadingActor):
    """Dispatches each message to `handlers()[type(message)]`, containing any failure."""

    def __init__(self, broker: Broker, *, quarantine: Quarantine | None = None) -> None:
        super().__init__()
        self.broker = broker
        self.quarantine = quarantine
        self._dispatch = self.handlers()

    def handlers(self) -> dict[type[Any], Callable[[Any], Any]]:
        raise NotImplementedError

    def on_receive(self, message: Any) -> Any:
        """Handle one message; the handler's return value is the reply to an `ask`, and
        goes to the message's `reply` future if it carries one."""
        answer = self._handle(message)
        reply: Future[Any] | None = getattr(message, "reply", None)
        if reply is not None:
            with contextlib.suppress(InvalidStateError):  # the asker gave up (cancelled)
                reply.set_result(answer)
        return answer

    def _handle(self, message: Any) -> Any:
        handler = self._dispatch.get(type(message))
        if handler is None:
            log.error("%s got a message it does not handle: %r", type(self).__name__, message)
            return None
        try:
            return handler(message)
        except Exception as exc:
            log.exception("%s failed to handle %s", type(self).__name__, type(message).__name__)
            failure = f"{type(exc).__name__}: {exc}"
            self._give_back(message, failure, poisoned=not is_outage(exc))
            return HandlingFailed(failure)

    def _give_back(self, message: Any, failure: str, *, poisoned: bool) -> None:
        """Offer the message's deliveries again later (a batch message carries several)."""
        single: Delivery | None = getattr(message, "delivery", None)
        for delivery in getattr(message, "deliveries", (single,) if single else ()):
            try:
                quarantine = self.quarantine if poisoned and self._last_try(delivery) else None
                if quarantine is not None:
                    count = delivery.delivery_count
                    quarantine.bury(
                        delivery, f"handling failed on all {count} deliveries: {failure}"
                    )
                else:
                    self.broker.nack(delivery, delay=RETRY_DELAY_SECONDS)
            except Exception:
                # The visibility timeout will return it anyway; nothing is lost.
                log.exception("could not hand a delivery back; it reappears after its timeout")

    def _last_try(self, delivery: Delivery) -> bool:
        """Whether the broker would dead-letter `delivery` rather than deliver it again."""
        return delivery.delivery_count >= self.broker.max_deliveries
