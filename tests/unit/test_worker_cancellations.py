"""Workers skip the steps of a task the orchestrator announced cancelled (in-memory broker)."""

from __future__ import annotations

import uuid
from uuid import UUID

from tasker.handlers.cancellations import CancelledTasks
from tasker.messaging.memory import InMemoryBroker
from tasker.messaging.messages import CANCELLATIONS_CHANNEL, TaskCancelled, encode
from tests.unit.test_worker_runtime import (
    RunningWorker,
    broker,
    calls,
    collect_results,
    queue_empty,
    running,
    send,
    step,
    wait_until,
)

__all__ = ["broker"]  # the fixture, shared with the worker runtime tests


def announce(broker: InMemoryBroker, handle: RunningWorker, task_uuid: UUID) -> None:
    """Broadcast the cancellation until the worker heard it (it subscribes as it starts)."""

    def heard() -> bool:
        broker.broadcast(CANCELLATIONS_CHANNEL, encode(TaskCancelled(task_uuid)))
        return task_uuid in handle.worker.cancelled_tasks

    wait_until(heard)


def test_steps_of_a_task_announced_cancelled_are_acked_without_running(
    broker: InMemoryBroker,
) -> None:
    cancelled, other = step("add"), step("add")
    with running(broker) as handle:
        announce(broker, handle, cancelled.task_uuid)
        send(broker, cancelled, other)
        results = collect_results(broker, 1)
        wait_until(lambda: queue_empty(broker))
        skipped = handle.worker.skipped_cancelled

    assert [result.step_uuid for result in results] == [other.step_uuid]
    assert str(cancelled.step_uuid) not in calls
    assert skipped == 1


def test_a_step_already_running_when_its_task_is_cancelled_still_reports(
    broker: InMemoryBroker,
) -> None:
    message = step("sleepy", input_data={"seconds": 0.5})
    with running(broker) as handle:
        send(broker, message)
        wait_until(lambda: str(message.step_uuid) in calls)
        announce(broker, handle, message.task_uuid)
        results = collect_results(broker, 1)

    # The result goes back; the state layer records it without reviving the task.
    assert (results[0].step_uuid, results[0].status) == (message.step_uuid, "success")


def test_an_undecodable_notice_is_ignored_and_the_listener_carries_on(
    broker: InMemoryBroker,
) -> None:
    task_uuid = uuid.uuid4()
    with running(broker) as handle:
        broker.broadcast(CANCELLATIONS_CHANNEL, b"not a notice")
        announce(broker, handle, task_uuid)
        assert handle.worker.cancelled_tasks.skip(task_uuid)


def test_cancelled_tasks_are_forgotten_when_too_many_or_too_old() -> None:
    now = [0.0]
    tasks = CancelledTasks(limit=2, ttl=10.0, clock=lambda: now[0])
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    tasks.add(first)
    now[0] = 5.0
    tasks.add(second)
    tasks.add(third)  # over the limit: the oldest goes

    assert (first in tasks, second in tasks, third in tasks) == (False, True, True)
    now[0] = 15.0  # past every id's time to live
    assert (len(tasks), tasks.skip(second), tasks.skipped) == (0, False, 0)


def test_skipping_counts_each_skipped_step() -> None:
    tasks = CancelledTasks()
    cancelled = uuid.uuid4()
    tasks.add(cancelled)

    assert [tasks.skip(cancelled), tasks.skip(uuid.uuid4()), tasks.skip(cancelled)] == [
        True,
        False,
        True,
    ]
    assert tasks.skipped == 2
