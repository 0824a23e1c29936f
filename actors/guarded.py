"""A pykka actor that never lets an exception escape.

Pykka stops an actor when an exception escapes `on_receive` for a `tell`; one bad message
must not take the orchestrator down. Each subclass maps message types to handlers; a failing
handler is logged and its message's delivery handed back to the broker for a later retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
import pykka

from tasker.messaging.broker import Broker

log = logging.getLogger(__name__)

#: Seconds before a message whose processing failed is offered again.
RETRY_DELAY_SECONDS = 1.0


class HandlingFailed(msgspec.Struct, frozen=True):
    """The reply an asker gets when handling its message failed (the actor lives on)."""

    reason: str


class GuardedActor(pykka.ThreadingActor):
    """Dispatches each message to `handlers()[type(message)]`, containing any failure."""

    def __init__(self, broker: Broker) -> None:
        super().__init__()
        self.broker = broker
        self._dispatch = self.handlers()

    def handlers(self) -> dict[type[Any], Callable[[Any], Any]]:
        raise NotImplementedError

    def on_receive(self, message: Any) -> Any:
        """Handle one message; the handler's return value is the reply to an `ask`."""
        handler = self._dispatch.get(type(message))
        if handler is None:
            log.error("%s got a message it does not handle: %r", type(self).__name__, message)
            return None
        try:
            return handler(message)
        except Exception as exc:
            log.exception("%s failed to handle %s", type(self).__name__, type(message).__name__)
            self._give_back(message)
            return HandlingFailed(f"{type(exc).__name__}: {exc}")

    def _give_back(self, message: Any) -> None:
        """Offer the message's deliveries again later (a batch message carries several)."""
        single = getattr(message, "delivery", None)
        for delivery in getattr(message, "deliveries", (single,) if single else ()):
            try:
                self.broker.nack(delivery, delay=RETRY_DELAY_SECONDS)
            except Exception:
                # The visibility timeout will return it anyway; nothing is lost.
                log.exception("could not hand a delivery back; it reappears after its timeout")
