"""Inbox pumps: threads that move messages from an orchestration queue to an actor.

A pump never holds more deliveries than its limit: it asks its actor without blocking and
waits for the oldest reply once the limit is reached. While a delivery waits in a mailbox
or is being handled, the pump renews its visibility, so a slow stretch never lets it
reappear on the queue and be handled twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import pykka

from tasker.actors.messages import ActorMessage
from tasker.actors.poison import Quarantine
from tasker.messaging.broker import Broker, BrokerError, Delivery
from tasker.messaging.messages import AnyMessage, UndecodableMessageError, decode

log = logging.getLogger(__name__)

#: Builds the actor message for a decoded wire message, or None if it does not belong here.
Translate = Callable[[Delivery, AnyMessage], ActorMessage | None]


class InboxPump(threading.Thread):
    def __init__(
        self,
        broker: Broker,
        queue: str,
        target: pykka.ActorRef[Any],
        translate: Translate,
        *,
        quarantine: Quarantine,
        max_in_flight: int,
        visibility_timeout: float,
        wait: float,
    ) -> None:
        super().__init__(name=f"inbox-{queue}", daemon=True)
        self.broker = broker
        self.queue = queue
        self.target = target
        self.translate = translate
        self.quarantine = quarantine
        self.max_in_flight = max_in_flight
        self.visibility_timeout = visibility_timeout
        self.wait = wait
        self._stopping = threading.Event()
        self._in_flight: deque[_Pending] = deque()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                self._pump_once()
                failures = 0
            except BrokerError as exc:
                failures += 1
                pause = min(0.1 * 2**failures, 5.0)
                log.warning(
                    "receive from %s failed (%s); retrying in %.1fs", self.queue, exc, pause
                )
                self._stopping.wait(pause)

    def _pump_once(self) -> None:
        free = self._free_slots()
        if free == 0:
            return
        deliveries = self.broker.receive(
            self.queue,
            max_messages=free,
            visibility_timeout=self.visibility_timeout,
            wait=self.wait,
        )
        for delivery in deliveries:
            self._dispatch(delivery)

    def _free_slots(self) -> int:
        self._in_flight = deque(p for p in self._in_flight if not _is_done(p.future))
        self._renew_leases()
        if len(self._in_flight) >= self.max_in_flight:
            self._await_oldest()
        return self.max_in_flight - len(self._in_flight)

    def _await_oldest(self) -> None:
        try:
            self._in_flight[0].future.get(timeout=min(self.wait, self.visibility_timeout / 3))
            self._in_flight.popleft()
        except pykka.Timeout:
            pass
        except Exception:
            self._in_flight.popleft()  # the actor already logged it

    def _renew_leases(self) -> None:
        now = time.monotonic()
        for index, pending in enumerate(self._in_flight):
            if pending.renew_at <= now:
                self.broker.extend_visibility(pending.delivery, self.visibility_timeout)
                self._in_flight[index] = pending._replace(renew_at=self._renew_time())

    def _renew_time(self) -> float:
        return time.monotonic() + self.visibility_timeout * 2 / 3

    def _dispatch(self, delivery: Delivery) -> None:
        try:
            message = self.translate(delivery, decode(delivery.body))
        except UndecodableMessageError as exc:
            self.quarantine.bury(delivery, f"undecodable message on {self.queue}: {exc}")
            return
        if message is None:
            self.quarantine.bury(delivery, f"message of the wrong kind for {self.queue}")
            return
        future = self.target.ask(message, block=False)
        self._in_flight.append(_Pending(future, delivery, self._renew_time()))


class _Pending(NamedTuple):
    """A delivery handed to the actor, and when its visibility needs renewing."""

    future: pykka.Future[Any]
    delivery: Delivery
    renew_at: float


def _is_done(future: pykka.Future[Any]) -> bool:
    try:
        future.get(timeout=0)
    except pykka.Timeout:
        return False
    except Exception:
        return True  # failed, and the actor already logged why
    return True
