"""The reply combiner: concurrent reports share broker calls; each thread sees its outcome."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from tasker.handlers.replies import ReplyCombiner
from tasker.messaging.broker import Delivery
from tasker.messaging.memory import InMemoryBroker


class _SlowTransactionalBroker(InMemoryBroker):
    """Counts batch calls; each takes a while, so reports arriving meanwhile pile up."""

    transactional = True

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail = fail

    def ack_with_replies(self, queue: str, replies: Sequence[tuple[Delivery, bytes]]) -> None:
        self.batches.append(len(replies))
        self.entered.set()
        self.release.wait(5)
        if self.fail:
            raise RuntimeError("broker down")
        super().ack_with_replies(queue, replies)


def _held(broker: InMemoryBroker, count: int) -> list[Delivery]:
    broker.ensure_queue("steps")
    broker.ensure_queue("results")
    broker.send_batch("steps", [b'{"n": %d}' % i for i in range(count)])
    return broker.receive("steps", max_messages=count)


def test_reports_arriving_during_a_send_go_together_in_the_next() -> None:
    broker = _SlowTransactionalBroker()
    combiner = ReplyCombiner(broker, "results")
    first, *rest = _held(broker, 5)
    leader = threading.Thread(target=combiner.send, args=(first, b'{"r": 0}'))
    leader.start()
    assert broker.entered.wait(5)
    followers = [
        threading.Thread(target=combiner.send, args=(d, b'{"r": %d}' % i))
        for i, d in enumerate(rest, 1)
    ]
    for thread in followers:
        thread.start()
    while len(combiner._waiting) < 4:  # all four wait behind the first send
        threading.Event().wait(0.01)
    broker.release.set()
    for thread in [leader, *followers]:
        thread.join(5)

    assert broker.batches == [1, 4]
    assert len(broker.receive("results", max_messages=10)) == 5
    assert broker.queue_stats("steps").in_flight == 0


def test_every_thread_of_a_failed_batch_gets_the_error() -> None:
    broker = _SlowTransactionalBroker(fail=True)
    broker.release.set()
    combiner = ReplyCombiner(broker, "results")
    (delivery,) = _held(broker, 1)

    with pytest.raises(RuntimeError, match="broker down"):
        combiner.send(delivery, b"{}")
