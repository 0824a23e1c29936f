"""Inbox pumps: threads that move messages from an orchestration queue to actors.

A pump never holds more deliveries than its limit (per actor, when it groups): it asks
its actors without blocking, each message going to the actor with the least in hand, and
waits for replies once the limit is reached. A pump given `group` hands each receive's
deliveries to one actor as one message and receives again only while an actor is free:
meanwhile arrivals gather in the queue, so the busier the actors, the larger their next
batches (one transaction each), while a quiet queue still yields batches of one at once.
Several actors behind one pump work in parallel without competing reads (on PGMQ, every
reader woken by an arrival reads, and all but one find nothing).

A pump given `hold` calls it before each receive: it blocks while what the actors need is
down (the orchestrator's database), so an outage does not use up the delivery attempts
of messages that could not have been handled anyway. While a delivery waits in a mailbox
or is being handled, the pump renews its visibility, so a slow stretch never lets it
reappear on the queue and be handled twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
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

#: With several actors busy, how often the pump looks whether one has become free.
_ANY_REPLY_POLL_SECONDS = 0.002


class InboxPump(threading.Thread):
    def __init__(
        self,
        broker: Broker,
        queue: str,
        targets: Sequence[pykka.ActorRef[Any]],
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
        self.targets = tuple(targets)
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
        self._prune()
        self._renew_leases()
        if self._full():
            self._await_any()
            self._prune()
        return 0 if self._full() else min(self.max_in_flight, self._limit() - self._held())

    def _limit(self) -> int:
        """Deliveries held at most: `max_in_flight` per actor when grouped (its batch)."""
        return self.max_in_flight * (len(self.targets) if self.group is not None else 1)

    def _full(self) -> bool:
        """Whether every actor has its batch (grouped) or the delivery limit is reached."""
        batches = len(self.targets) if self.group is not None else self.max_in_flight
        return len(self._in_flight) >= batches or self._held() >= self._limit()

    def _held(self) -> int:
        return sum(len(pending.deliveries) for pending in self._in_flight)

    def _prune(self) -> None:
        self._in_flight = deque(p for p in self._in_flight if not _is_done(p.future))

    def _await_any(self) -> None:
        """Wait until a reply comes (or leases need renewing): with one actor, for its
        oldest message; with several, briefly for the oldest, since any may finish first."""
        patience = min(self.wait, self.visibility_timeout / 3)
        if len(self.targets) > 1:
            patience = min(patience, _ANY_REPLY_POLL_SECONDS)
        # A timeout, or a failure the actor already logged: the caller prunes either way.
        with contextlib.suppress(Exception):
            self._in_flight[0].future.get(timeout=patience)

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
        self._prune()
        target = min(self.targets, key=self._in_hand)
        future = target.ask(message, block=False)
        self._in_flight.append(_Pending(future, deliveries, self._renew_time(), target))

    def _in_hand(self, target: pykka.ActorRef[Any]) -> int:
        return sum(len(p.deliveries) for p in self._in_flight if p.target is target)


class _Pending(NamedTuple):
    """Deliveries handed to the actor in one message, and when their visibility needs renewing."""

    future: pykka.Future[Any]
    deliveries: tuple[Delivery, ...]
    renew_at: float
    target: pykka.ActorRef[Any]


def _is_done(future: pykka.Future[Any]) -> bool:
    try:
        future.get(timeout=0)
    except pykka.Timeout:
        return False
    except Exception:
        return True  # failed, and the actor already logged why
    return True
