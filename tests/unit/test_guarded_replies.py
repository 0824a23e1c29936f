"""A told message that carries a `reply` future gets its answer there, even a failure,
and an asker that gave up (cancelled the future) does not take the actor down."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import msgspec
import pykka
import pytest

from tasker.actors.guarded import GuardedActor, HandlingFailed
from tasker.messaging.memory import InMemoryBroker


class Double(msgspec.Struct, frozen=True):
    n: int
    reply: Future[Any] | None = None


class Doubler(GuardedActor):
    def handlers(self) -> dict[type[Any], Callable[[Any], Any]]:
        return {Double: self.double}

    def double(self, message: Double) -> int:
        if message.n < 0:
            raise ValueError(f"cannot double {message.n}")
        return 2 * message.n


@pytest.fixture
def doubler() -> Iterator[pykka.ActorRef[Any]]:
    ref = Doubler.start(InMemoryBroker())
    yield ref
    ref.stop()


def test_the_answer_goes_to_the_reply_future(doubler: pykka.ActorRef[Any]) -> None:
    reply: Future[Any] = Future()
    doubler.tell(Double(21, reply=reply))
    assert reply.result(timeout=5) == 42


def test_a_failure_is_answered_too(doubler: pykka.ActorRef[Any]) -> None:
    reply: Future[Any] = Future()
    doubler.tell(Double(-1, reply=reply))
    assert reply.result(timeout=5) == HandlingFailed("ValueError: cannot double -1")


def test_an_asker_that_gave_up_leaves_the_actor_running(doubler: pykka.ActorRef[Any]) -> None:
    abandoned: Future[Any] = Future()
    assert abandoned.cancel()
    doubler.tell(Double(1, reply=abandoned))
    assert doubler.ask(Double(5), timeout=5) == 10
    assert doubler.is_alive()
