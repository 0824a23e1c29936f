"""Inbox pumps: threads that move messages from an orchestration queue to an actor.

A pump never holds more deliveries than its limit: it asks its actor without blocking and
waits for the oldest reply once the limit is reached. A pump given `group` hands each
receive's deliveries to its actor as one message and receives again only once that one is
handled: meanwhile arrivals gather in the queue, so the busier the actor, the larger its
next batch (one transaction each), while a quiet queue still yields batches of one at
once. A pump given `hold` calls it before each receive: it blocks while what the actor
needs is down (the orchestrator's database), so an outage does not use up the delivery
attempts of messages that could not have been handled anyway. While a delivery waits in
a mailbox or is being handled, the pump renews its visibility, so a slow stretch never
lets it reappear on the queue and be handled twice.
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
#: Builds one actor message from the translated messages of one receive.
Group = Callable[[list[ActorMessage]], ActorMessage]
#: Blocks while the actor could not handle a message; returns early once the event is set.
Hold = Callable[[threading.Event], None]


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
        group: Group | None = None,
        hold: Hold | None = None,
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
        self.group = group
        self.hold = hold
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
        if self.hold is not None:
            self.hold(self._stopping)
            if self._stopping.is_set():
                return
        deliveries = self.broker.receive(
            self.queue,
            max_messages=free,
            visibility_timeout=self.visibility_timeout,
            wait=self.wait,
        )
        accepted = [(d, m) for d in deliveries if (m := self._translated(d)) is not None]
        if self.group is not None and accepted:
            batch = self.group([message for _, message in accepted])
            self._ask(batch, tuple(delivery for delivery, _ in accepted))
            return
        for delivery, message in accepted:
            self._ask(message, (delivery,))

    def _free_slots(self) -> int:
        self._in_flight = deque(p for p in self._in_flight if not _is_done(p.future))
        self._renew_leases()
        limit = 1 if self.group is not None else self.max_in_flight  # batches, or deliveries
        if len(self._in_flight) >= limit or self._held() >= self.max_in_flight:
            self._await_oldest()
        if self.group is not None and self._in_flight:
            return 0
        return self.max_in_flight - self._held()

    def _held(self) -> int:
        return sum(len(pending.deliveries) for pending in self._in_flight)

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
                for delivery in pending.deliveries:
                    self.broker.extend_visibility(delivery, self.visibility_timeout)
                self._in_flight[index] = pending._replace(renew_at=self._renew_time())

    def _renew_time(self) -> float:
        return time.monotonic() + self.visibility_timeout * 2 / 3

    def _translated(self, delivery: Delivery) -> ActorMessage | None:
        """The actor message for `delivery`, or None once a bad one is dead-lettered."""
        try:
            message = self.translate(delivery, decode(delivery.body))
        except UndecodableMessageError as exc:
            self.quarantine.bury(delivery, f"undecodable message on {self.queue}: {exc}")
            return None
        if message is None:
            self.quarantine.bury(delivery, f"message of the wrong kind for {self.queue}")
        return message

    def _ask(self, message: ActorMessage, deliveries: tuple[Delivery, ...]) -> None:
        future = self.target.ask(message, block=False)
        self._in_flight.append(_Pending(future, deliveries, self._renew_time()))


class _Pending(NamedTuple):
    """Deliveries handed to the actor in one message, and when their visibility needs renewing."""

    future: pykka.Future[Any]
    deliveries: tuple[Delivery, ...]
    renew_at: float


def _is_done(future: pykka.Future[Any]) -> bool:
    try:
        future.get(timeout=0)
    except pykka.Timeout:
        return False
    except Exception:
        return True  # failed, and the actor already logged why
    return True
