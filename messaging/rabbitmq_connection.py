"""Per-thread pika connections that reconnect, and the classification of pika's errors.

pika's BlockingConnection is not thread-safe, so every thread gets its own connection and
channel (a *link*), created on first use. An operation runs on the calling thread's link;
when it fails with a recoverable error the link is thrown away and the operation is run
again on a fresh one, with bounded exponential backoff. Operations are therefore written
to be safe to repeat (or to resume where they stopped). No pika type leaves this module
except the channel handed to an operation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pika
import pika.exceptions as px

from .broker import BrokerError

log = logging.getLogger(__name__)

T = TypeVar("T")

# AMQP reply codes that retrying cannot fix: access refused, not found, resource locked,
# precondition failed, not allowed, not implemented, invalid path, frame/syntax errors.
_PERMANENT_REPLY_CODES = frozenset({402, 403, 404, 405, 406, 501, 502, 503, 530, 540})
_PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    px.AuthenticationError,
    px.ProbableAuthenticationError,
    px.ProbableAccessDeniedError,
    px.IncompatibleProtocolError,
    px.UnroutableError,
    px.ConsumerCancelled,
    px.DuplicateConsumerTag,
    px.ProtocolSyntaxError,
    px.ShortStringTooLong,
)
_MAX_BACKOFF = 2.0


def classify(exc: BaseException) -> bool | None:
    """True if retrying on a new connection may succeed, False if it cannot, None if
    `exc` is not a broker failure at all (then it is not ours to translate)."""
    if isinstance(exc, _PERMANENT_ERRORS):
        return False
    if isinstance(exc, px.ChannelClosedByBroker | px.ConnectionClosedByBroker):
        # A consumer timeout is a 406 too, but a new channel recovers from it.
        timed_out = "acknowledgement" in str(exc.reply_text)
        return timed_out or exc.reply_code not in _PERMANENT_REPLY_CODES
    if isinstance(exc, px.AMQPError | OSError):
        return True
    # Any other pika exception (reentrancy, bad callbacks) is a bug retrying cannot fix,
    # but it is still translated: no pika type leaves the backend.
    return False if type(exc).__module__.startswith("pika") else None


def describe(exc: BaseException) -> str:
    """A one-line account of a pika error, with a hint for the usual mistakes."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, px.UnroutableError) or getattr(exc, "reply_code", None) == 404:
        text += " (the queue does not exist: call ensure_queue() first)"
    return text


class _Link:
    """One thread's connection and its publisher-confirming channel."""

    def __init__(self, parameters: Any) -> None:
        self.thread = threading.current_thread()
        # Held by the owning thread while it uses the link, so close() never pulls the
        # connection out from under it.
        self.busy = threading.Lock()
        self.connection: Any = pika.BlockingConnection(parameters)
        try:
            self.channel: Any = self.connection.channel()
            self.channel.confirm_delivery()
        except BaseException:
            self.close()
            raise

    @property
    def usable(self) -> bool:
        return bool(self.connection.is_open and self.channel.is_open)

    def close(self) -> None:
        try:
            if self.connection.is_open:
                self.connection.close()
        except Exception:  # already broken: nothing left to release
            log.debug("closing a broken RabbitMQ connection failed", exc_info=True)


class ThreadLinks:
    """The links of every thread that used one broker, with retrying execution."""

    def __init__(self, url: str, *, retry_for: float, connection_name: str) -> None:
        try:
            self._parameters = pika.URLParameters(url)
        except Exception as exc:
            raise BrokerError(f"invalid RabbitMQ URL: {exc}", recoverable=False) from exc
        # Shown by `rabbitmqctl list_connections client_properties` and the management UI.
        self._parameters.client_properties = {"connection_name": connection_name}
        self._parameters.connection_attempts = 1  # retries are ours, with backoff
        if self._parameters.blocked_connection_timeout is None:
            self._parameters.blocked_connection_timeout = 60.0
        self._retry_for = retry_for
        self._local = threading.local()
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.wake_generation = 0

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def run(self, what: str, operation: Callable[[Any], T]) -> T:
        """Run `operation(channel)` on this thread's link, reconnecting and repeating it
        while failures are recoverable, for at most `retry_for` seconds."""
        give_up_at = time.monotonic() + self._retry_for
        attempt = 0
        while True:
            try:
                return self._run_once(operation)
            except Exception as exc:
                recoverable = classify(exc)
                if recoverable is None:
                    raise
                delay = 0.0 if attempt == 0 else min(_MAX_BACKOFF, 0.1 * 2 ** (attempt - 1))
                if not recoverable or time.monotonic() + delay > give_up_at:
                    raise self._give_up(what, exc, recoverable) from exc
                log.warning("RabbitMQ %s failed, retrying: %s", what, describe(exc))
                self._closed.wait(delay)
                attempt += 1

    def _run_once(self, operation: Callable[[Any], T]) -> T:
        if self.closed:
            raise BrokerError("the RabbitMQ broker is closed", recoverable=False)
        link = self._current()
        try:
            with link.busy:
                return operation(link.channel)
        except Exception:
            self._discard(link)
            raise
        finally:
            if self.closed:
                self._discard(link)

    def _give_up(self, what: str, exc: BaseException, recoverable: bool) -> BrokerError:
        if self.closed:
            return BrokerError("the RabbitMQ broker is closed", recoverable=False)
        if recoverable:
            message = f"RabbitMQ {what} still failing after {self._retry_for}s of retries"
            return BrokerError(f"{message}: {describe(exc)}", recoverable=True)
        return BrokerError(f"RabbitMQ {what} failed: {describe(exc)}", recoverable=False)

    def _current(self) -> _Link:
        link: _Link | None = getattr(self._local, "link", None)
        if link is not None and link.usable:
            return link
        if link is not None:
            self._discard(link)
        link = _Link(self._parameters)
        self._local.link = link
        with self._lock:
            self._links.add(link)
            dead = {other for other in self._links if not other.thread.is_alive()}
            self._links -= dead
        for other in dead:  # their threads are gone, so nothing else can be using them
            other.close()
        return link

    def _discard(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)
        if getattr(self._local, "link", None) is link:
            self._local.link = None
        link.close()

    def woken(self, generation: int) -> bool:
        """Whether wake() or close() was called since `generation` was read."""
        return self.closed or self.wake_generation != generation

    def wake_all(self) -> None:
        """Make every thread blocked in `process_data_events` return promptly."""
        with self._lock:
            self.wake_generation += 1
            links = list(self._links)
        for link in links:
            try:
                link.connection.add_callback_threadsafe(_nothing)
            except Exception:  # closed meanwhile: its thread is not blocked on it
                log.debug("could not wake a RabbitMQ connection", exc_info=True)

    def close_all(self) -> None:
        """Close every idle link now; a busy one is closed by its own thread when its
        current operation ends (closing it from here would race with that thread)."""
        self._closed.set()
        self.wake_all()
        with self._lock:
            links = list(self._links)
        for link in links:
            if link.busy.acquire(blocking=False):
                try:
                    self._discard(link)
                finally:
                    link.busy.release()


def _nothing() -> None:
    """A callback whose only effect is to interrupt `process_data_events`."""
