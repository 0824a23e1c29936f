"""Per-thread pika connections that reconnect, and the classification of pika's errors.

pika's BlockingConnection is not thread-safe, so every thread gets its own connection and
confirm-mode channel (a *link*), created on first use; the thread's consumers live on it.
Every use of a link is serialised by its `busy` lock. The owning thread holds it for its
own operations; another thread that must act on the link (settling a delivery received
there) hands it an *action*: if the link is idle the handing thread takes the lock and
runs the action at once, otherwise the action is queued and the holder runs it before it
lets go of the lock. A holder blocked in `process_data_events` is woken for that through
`add_callback_threadsafe`, pika's one thread-safe call. So pika is only ever driven by one
thread at a time, and nothing waits for the owner to come back.

An operation runs on the calling thread's link; when it fails with a recoverable error the
link is thrown away and the operation is run again on a fresh one, with bounded
exponential backoff. No pika type leaves the backend.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pika
import pika.exceptions as px
from pika.adapters.blocking_connection import ReturnedMessage

from .broker import BrokerError
from .rabbitmq_consumer import LinkConsumers

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
    elif "x-queue-type" in text:
        text += " (a queue of the old classic layout: delete it, see rabbitmq_topology)"
    return text


class Link:
    """One connection, its publisher-confirming channel and the consumers on it (and a
    transactional channel for batches, see `batch_channel`)."""

    def __init__(self, parameters: Any, closed: threading.Event) -> None:
        self.thread = threading.current_thread()
        self.busy = threading.Lock()
        self.alive = True
        self.pending: collections.deque[Callable[[], None]] = collections.deque()
        self.consumers = LinkConsumers()
        # Read by the janitor without the lock: when maintenance is next needed, and
        # until when the holder is itself pumping (and so maintaining) the link.
        self.next_due = math.inf
        self.attended_until = 0.0
        self.pumped_at = time.monotonic()
        self._closed = closed
        self._batch: Any = None
        self._returned: list[ReturnedMessage] = []
        self.connection: Any = pika.BlockingConnection(parameters)
        try:
            self.channel: Any = self.connection.channel()
            self.channel.confirm_delivery()
            self.channel.add_on_cancel_callback(self.consumers.on_cancelled)
        except BaseException:
            self.break_()
            raise

    def batch_channel(self) -> Any:
        """This connection's transactional channel (holder only), opened on first use.

        A batch published on it is RabbitMQ's responsibility once `commit_batch` returns,
        as confirms would make it, but in one round trip where confirms on the blocking
        channel take one per message."""
        if self._batch is None or not self._batch.is_open:
            self._batch = self.connection.channel()
            self._batch.tx_select()
            self._batch.add_on_return_callback(self._on_batch_return)
        return self._batch

    def commit_batch(self) -> None:
        """Commit what was published on the transactional channel. Raises pika's
        UnroutableError, as a confirm would, if RabbitMQ returned any of it (returns come
        before the commit's answer; `process_data_events` runs their callbacks)."""
        self._returned = []
        self._batch.tx_commit()
        self.connection.process_data_events(time_limit=0)
        if self._returned:
            raise px.UnroutableError(self._returned)

    def _on_batch_return(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self._returned.append(ReturnedMessage(method, properties, body))

    @property
    def usable(self) -> bool:
        return bool(self.alive and self.connection.is_open and self.channel.is_open)

    def pump(self, time_limit: float = 0.0) -> None:
        """Process I/O (deliveries, heartbeats, wake-ups) for up to `time_limit` seconds,
        returning early when anything arrives; then run handed-over actions. Holder only."""
        self.connection.process_data_events(time_limit=max(0.0, time_limit))
        self.pumped_at = time.monotonic()
        self.drain()

    def drain(self) -> None:
        """Run the actions other threads handed over (holder only)."""
        while self.pending:
            self.pending.popleft()()

    def submit(self, action: Callable[[], None]) -> None:
        """Run `action` (which uses this link) now if the link is idle, else have its
        holder run it promptly. Callable from any thread."""
        self.pending.append(action)
        if self.busy.acquire(blocking=False):
            self._drain_safely()
            self.release()
        else:
            self.poke()

    def release(self) -> None:
        """Let go of `busy`, first running actions handed over meanwhile."""
        while True:
            if self.alive and self._closed.is_set():
                self.break_()
            self.busy.release()
            # An action queued after our last drain, by a thread that saw us busy.
            if not self.pending or not self.busy.acquire(blocking=False):
                return
            self._drain_safely()

    def _drain_safely(self) -> None:
        try:
            self.drain()
        except Exception as exc:
            if classify(exc) is None:
                log.exception("settling a RabbitMQ delivery failed")
            else:
                log.warning("RabbitMQ connection lost while settling: %s", describe(exc))
            self.break_()
            self._drain_safely()  # the rest now see a dead link and only log

    def poke(self) -> None:
        """Make the holder's `process_data_events` return now."""
        try:
            self.connection.add_callback_threadsafe(_nothing)
        except Exception:  # closed meanwhile: its holder is not blocked on it
            log.debug("could not wake a RabbitMQ connection", exc_info=True)

    def break_(self) -> None:
        """Mark dead and close (holder only, or before anyone else can see the link).
        RabbitMQ requeues every delivery still unacked on it."""
        self.alive = False
        self.consumers.forget()
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
        self._links: set[Link] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.wake_generation = 0

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def run(self, what: str, operation: Callable[[Link], T]) -> T:
        """Run `operation(link)` on this thread's link, reconnecting and repeating it
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

    def _run_once(self, operation: Callable[[Link], T]) -> T:
        if self.closed:
            raise BrokerError("the RabbitMQ broker is closed", recoverable=False)
        link = self._current()
        link.busy.acquire()
        try:
            return operation(link)
        except Exception:
            link.break_()
            raise
        finally:
            link.release()

    def _give_up(self, what: str, exc: BaseException, recoverable: bool) -> BrokerError:
        if self.closed:
            return BrokerError("the RabbitMQ broker is closed", recoverable=False)
        if recoverable:
            message = f"RabbitMQ {what} still failing after {self._retry_for}s of retries"
            return BrokerError(f"{message}: {describe(exc)}", recoverable=True)
        return BrokerError(f"RabbitMQ {what} failed: {describe(exc)}", recoverable=False)

    def _current(self) -> Link:
        link: Link | None = getattr(self._local, "link", None)
        if link is not None and link.usable:
            return link
        if link is not None:
            link.busy.acquire()
            link.break_()
            link.release()
            self._forget(link)
        link = Link(self._parameters, self._closed)
        self._local.link = link
        with self._lock:
            self._links.add(link)
        return link

    def _forget(self, link: Link) -> None:
        with self._lock:
            self._links.discard(link)
        if getattr(self._local, "link", None) is link:
            self._local.link = None

    def snapshot(self) -> list[Link]:
        """Every link, dropping those that are dead."""
        with self._lock:
            self._links = {link for link in self._links if link.alive}
            return list(self._links)

    def retire(self, link: Link) -> bool:
        """Close the link of a finished thread once nothing received on it is unsettled."""
        if link.thread.is_alive() or link.consumers.holding or link.pending:
            return False
        if not link.busy.acquire(blocking=False):
            return False
        try:
            link.consumers.give_back(link)  # uncounted, unlike a requeue on close
        except Exception:  # closing anyway: RabbitMQ requeues them
            log.debug("returning buffered deliveries failed", exc_info=True)
        finally:
            link.break_()
            link.release()
        self._forget(link)
        return True

    def woken(self, generation: int) -> bool:
        """Whether wake() or close() was called since `generation` was read."""
        return self.closed or self.wake_generation != generation

    def wake_all(self) -> None:
        """Make every thread blocked in `process_data_events` return promptly."""
        with self._lock:
            self.wake_generation += 1
            links = list(self._links)
        for link in links:
            link.poke()

    def close_all(self) -> None:
        """Close every idle link now; a busy one is closed by its holder when it lets go
        (closing it from here would race with that thread)."""
        self._closed.set()
        self.wake_all()
        for link in self.snapshot():
            if link.busy.acquire(blocking=False):
                link.release()  # breaks it, the broker being closed
        with self._lock:
            self._links.clear()


def _nothing() -> None:
    """A callback whose only effect is to interrupt `process_data_events`."""
