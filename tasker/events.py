"""Domain events: what a step declares in `publishes_events`, published after its outcome.

A declaration is an event name (published on success) or `{name, condition}` with
condition `success`, `failure` or `always`. After the worker has reported the attempt that
decides the step's outcome (a success, or a failure that will not be retried), each
matching event goes to in-process subscribers (`subscribe`) and, durably,
to the `events_queue` (a JSON `DomainEvent` per message). Publishing never fails the step:
a subscriber's or the broker's error is logged and the event dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec

from tasker.messaging.broker import Broker
from tasker.messaging.messages import StepMessage

log = logging.getLogger(__name__)


class DomainEvent(msgspec.Struct, frozen=True):
    name: str
    task_uuid: UUID
    step_uuid: UUID
    step_name: str
    namespace: str
    status: str  # success | failure
    payload: Any
    correlation_id: str | None
    occurred_at: datetime


Subscriber = Callable[[DomainEvent], None]
_subscribers: dict[str, list[Subscriber]] = {}
_lock = threading.Lock()
_encoder = msgspec.json.Encoder()


def subscribe(name: str, subscriber: Subscriber) -> Callable[[], None]:
    """Call `subscriber` for every event called `name` (`*`: all); returns an unsubscribe."""
    with _lock:
        _subscribers.setdefault(name, []).append(subscriber)
    return lambda: _unsubscribe(name, subscriber)


def _unsubscribe(name: str, subscriber: Subscriber) -> None:
    with _lock:
        if subscriber in _subscribers.get(name, []):
            _subscribers[name].remove(subscriber)


def declared(entry: Any) -> tuple[str, str]:
    """(name, condition) of one `publishes_events` entry."""
    if isinstance(entry, dict):
        return str(entry.get("name", "")), str(entry.get("condition", "success"))
    return str(entry), "success"


def settles_step(message: StepMessage, success: bool, *, retryable: bool, yielded: bool) -> bool:
    """Whether this attempt decides the step's outcome, which events follow: a success, or
    a failure with no retry to come (apply_step_result's rule); never a checkpoint yield."""
    if yielded:
        return False
    return success or not (
        retryable and message.retryable and message.attempt < message.max_attempts
    )


def events_for(message: StepMessage, success: bool, payload: Any) -> list[DomainEvent]:
    status = "success" if success else "failure"
    now = datetime.now(UTC)
    return [
        DomainEvent(name, message.task_uuid, message.step_uuid, message.step_name,
                    message.namespace, status, payload, message.correlation_id, now)
        for name, condition in map(declared, message.publishes_events)
        if name and condition in (status, "always")
    ]  # fmt: skip


class EventPublisher:
    """Publishes a step's declared events after its outcome (never raises)."""

    def __init__(self, broker: Broker, queue: str) -> None:
        self.broker = broker
        self.queue = queue
        self._queue_ready = False

    def after_outcome(self, message: StepMessage, success: bool, payload: Any) -> None:
        if not message.publishes_events:
            return
        for event in events_for(message, success, payload):
            self._notify(event)
            self._send(event)

    def _notify(self, event: DomainEvent) -> None:
        with _lock:
            targets = [*_subscribers.get(event.name, []), *_subscribers.get("*", [])]
        for subscriber in targets:
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber failed on %s (the step is unaffected)", event.name)

    def _send(self, event: DomainEvent) -> None:
        if not self.queue:
            return
        try:
            if not self._queue_ready:
                self.broker.ensure_queue(self.queue)
                self._queue_ready = True
            self.broker.send(self.queue, _encoder.encode(event))
        except Exception as exc:
            log.warning("event %s not queued (the step is unaffected): %s", event.name, exc)
