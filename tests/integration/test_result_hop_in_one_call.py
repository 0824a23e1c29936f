"""The result hop in one call (PGMQ, migration 0012) does what the general path does.

The step messages it builds in SQL must be the messages the orchestrator builds in Python
(the worker decodes both), it must ack the results and finish the tasks it finishes, and it
must leave a dynamic step's result, message and all, to the general path.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
import pytest

from tasker.actors import step_enqueuer
from tasker.actors.messages import EnqueueSteps
from tasker.actors.step_dispatch import StepDispatcher
from tasker.actors.step_enqueuer import StepEnqueuer
from tasker.messaging.broker import Delivery
from tasker.messaging.messages import (
    ORCHESTRATION_RESULTS_QUEUE,
    StepMessage,
    StepResultMessage,
    decode,
    encode,
    worker_queue,
)
from tasker.messaging.pgmq import PgmqBroker
from tasker.state.db import Database
from tasker.state.migrate import migrate
from tasker.state.records import HopOutcome, ResultInput
from tasker.state.repository import RegisteredTemplate, StateRepository, TaskSpec
from tasker.state.templates import HandlerDefinition, StepDefinition, TaskTemplate

pytestmark = pytest.mark.postgres

NAMESPACE = "hop_tests"
OTHER_NAMESPACE = "hop_others"
EVENTS = ("b.done", {"name": "b.failed", "condition": "failure"})
LIVE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def _template(namespace: str = NAMESPACE) -> TaskTemplate:
    def step(name: str, *parents: str, **extra: Any) -> StepDefinition:
        handler = HandlerDefinition(callable=f"hop.{name}", initialization={"rate": 2})
        return StepDefinition(name=name, handler=handler, dependencies=parents, **extra)

    return TaskTemplate(
        name="hop",
        namespace_name=namespace,
        version="1.0.0",
        steps=(
            step("a"),
            step("b", "a", publishes_events=EVENTS, timeout_seconds=12.5),
            step("c", "b"),
            step("pick", "c", type="decision"),
        ),
    )


@dataclass
class Env:
    broker: PgmqBroker
    repository: StateRepository
    dispatcher: StepDispatcher
    template: RegisteredTemplate

    def start(
        self,
        *,
        in_one_call: bool = False,
        template: RegisteredTemplate | None = None,
        **context: Any,
    ) -> StepMessage:
        """A new task, its root step claimed and sent (the general way, or in one call as
        the enqueuer does on PGMQ); that step's message."""
        template = template or self.template
        with self.repository.database.transaction() as unit:
            spec = TaskSpec(task_uuid=uuid.uuid4(), context=context, correlation_id="corr-1")
            creation = self.repository.create_task(unit, template, spec)
            if not in_one_call:
                self.dispatcher.dispatch(unit, creation.ready_steps)
        if in_one_call:
            sent = self.repository.claim_and_send(creation.ready_steps, LIVE)
            assert sent == [(NAMESPACE, 1)]
        return self.next_step(template.template.namespace_name)

    def next_step(self, namespace: str = NAMESPACE) -> StepMessage:
        (delivery,) = self.broker.receive(worker_queue(namespace), visibility_timeout=30)
        self.broker.ack(delivery)
        message = decode(delivery.body)
        assert isinstance(message, StepMessage)
        return message

    def report(self, step: StepMessage, result: Any, *, success: bool = True) -> Delivery:
        """The worker's result for `step`, sent and received back from the results queue."""
        now = datetime.now(UTC)
        body = StepResultMessage(
            task_uuid=step.task_uuid,
            step_uuid=step.step_uuid,
            attempt=step.attempt,
            status="success" if success else "failure",
            started_at=now,
            finished_at=now,
            worker_id="hop-test",
            result=result,
            fence=step.fence,
        )
        self.broker.send(ORCHESTRATION_RESULTS_QUEUE, encode(body))
        (delivery,) = self.broker.receive(ORCHESTRATION_RESULTS_QUEUE, visibility_timeout=30)
        return delivery

    def in_one_call(self, delivery: Delivery, *, on_pgmq: bool = True) -> HopOutcome:
        """The result applied in one call, as on PGMQ (messages sent, result deleted) or as
        on another broker (messages returned, nothing sent or deleted)."""
        result = decode(delivery.body)
        assert isinstance(result, StepResultMessage)
        found = self.broker.database_message_ids([delivery])
        assert found is not None
        queue, (message_id,) = found
        entry = ResultInput(
            message_id=message_id,
            step_uuid=result.step_uuid,
            fence=result.fence,
            success=result.status == "success",
            result=result.result,
            error=None,
            started_at=result.started_at,
            finished_at=result.finished_at,
            worker_id=result.worker_id,
            trace_context=LIVE,
        )
        source = queue if on_pgmq else None
        (outcome,) = self.repository.apply_results_and_dispatch(source, [entry])
        return outcome

    def the_general_way(self, delivery: Delivery) -> None:
        result = decode(delivery.body)
        assert isinstance(result, StepResultMessage)
        with self.repository.database.transaction() as unit:
            outcome = self.repository.apply_plain_step_result(
                unit,
                step_uuid=result.step_uuid,
                fence=result.fence,
                success=True,
                result=result.result,
                error=None,
                started_at=result.started_at,
                finished_at=result.finished_at,
                worker_id=result.worker_id,
            )
            assert outcome is not None
            self.dispatcher.dispatch(unit, outcome.ready_steps, live=LIVE, acking=[delivery])

    def queued(self, queue: str) -> int:
        stats = self.broker.queue_stats(queue)
        return stats.ready + stats.in_flight

    def task_status(self, task_uuid: UUID) -> str:
        return self.repository.get_task(task_uuid).status


@pytest.fixture
def env(make_database: Callable[[], str]) -> Iterator[Env]:
    url = make_database()
    migrate(url)
    broker = PgmqBroker(url, poll_interval=0.1)
    for queue in (worker_queue(NAMESPACE), worker_queue(OTHER_NAMESPACE),
                  ORCHESTRATION_RESULTS_QUEUE):  # fmt: skip
        broker.ensure_queue(queue)
    database = Database(url)
    repository = StateRepository(database)
    template = _template()
    registered = RegisteredTemplate(repository.register_template(template), template)
    yield Env(broker, repository, StepDispatcher(broker, repository), registered)
    broker.close()
    database.close()


def _comparable(message: StepMessage) -> StepMessage:
    """The message without what differs between two tasks and two spans."""
    return msgspec.structs.replace(
        message, task_uuid=UUID(int=0), step_uuid=UUID(int=0), trace_context={}
    )


def _trace_id(carrier: dict[str, str]) -> str:
    return carrier["traceparent"].split("-")[1]


def test_the_messages_it_builds_are_the_ones_the_general_path_builds(env: Env) -> None:
    general = env.start(order=7)
    env.the_general_way(env.report(general, {"paid": 12}))
    built_in_python = env.next_step()

    one_call = env.start(order=7)
    hop = env.in_one_call(env.report(one_call, {"paid": 12}))
    built_in_sql = env.next_step()

    assert (hop.outcome.outcome, hop.sent, hop.namespace) == ("applied", 1, NAMESPACE)
    assert built_in_sql.step_name == "b" and built_in_sql.dependency_results == {"a": {"paid": 12}}
    assert list(built_in_sql.publishes_events) == [*EVENTS]
    assert built_in_sql.handler.initialization == {"rate": 2}
    assert _comparable(built_in_sql) == _comparable(built_in_python)
    assert _trace_id(built_in_sql.trace_context) == _trace_id(LIVE)


def test_off_pgmq_the_messages_come_back_to_be_published_after_commit(env: Env) -> None:
    general = env.start(order=7)
    env.the_general_way(env.report(general, {"paid": 12}))
    built_in_python = env.next_step()

    step = env.start(order=7)
    hop = env.in_one_call(env.report(step, {"paid": 12}), on_pgmq=False)

    (body,) = hop.messages
    message = decode(body.encode())
    assert isinstance(message, StepMessage)
    assert _comparable(message) == _comparable(built_in_python)
    assert hop.dispatches == ((message.step_uuid, message.fence),)
    assert (hop.sent, hop.namespace) == (1, NAMESPACE)
    assert env.queued(worker_queue(NAMESPACE)) == 0  # the caller publishes
    assert env.queued(ORCHESTRATION_RESULTS_QUEUE) == 1  # and acks, after publishing
    with env.repository.database.transaction() as unit:
        unpublished = unit.execute_sql(
            "SELECT published_at IS NULL FROM tasker.workflow_steps WHERE step_uuid = %s",
            (message.step_uuid,),
        )
    assert unpublished == [(True,)]  # until its publish confirm is recorded


def test_root_steps_sent_in_one_call_are_the_messages_of_the_general_path(env: Env) -> None:
    general = env.start(order=3)
    one_call = env.start(order=3, in_one_call=True)

    assert _comparable(one_call) == _comparable(general)
    assert _trace_id(one_call.trace_context) == _trace_id(LIVE)
    assert env.repository.claim_and_send([one_call.step_uuid], LIVE) == []  # claimed once


class CountingRepository(StateRepository):
    """Counts the one-statement enqueues (and makes them)."""

    one_calls = 0

    def claim_and_send(
        self, step_uuids: Sequence[UUID], trace_context: Mapping[str, str]
    ) -> list[tuple[str, int]]:
        self.one_calls += 1
        return super().claim_and_send(step_uuids, trace_context)


@pytest.mark.parametrize("tracing_on", [False, True])
def test_root_steps_of_a_task_with_no_live_trace_take_one_call_unless_tracing_is_on(
    env: Env, monkeypatch: pytest.MonkeyPatch, tracing_on: bool
) -> None:
    # Given tracing off (the default) or on, and a new task's root steps with no live trace
    monkeypatch.setattr(step_enqueuer, "tracing_enabled", lambda: tracing_on)
    repository = CountingRepository(env.repository.database)
    enqueuer = StepEnqueuer.start(env.broker, env.repository.database, repository)
    try:
        with env.repository.database.transaction() as unit:
            creation = env.repository.create_task(unit, env.template, TaskSpec(uuid.uuid4()))

        # When they are enqueued
        enqueuer.ask(EnqueueSteps(creation.ready_steps, {}, task_uuid=creation.task_uuid))
    finally:
        enqueuer.stop()

    # Then they are sent either way, in one statement unless a span must join the trace
    assert env.next_step().task_uuid == creation.task_uuid
    assert repository.one_calls == (0 if tracing_on else 1)


def test_results_arrive_as_the_worker_sent_them_a_null_one_included(env: Env) -> None:
    # Given two tasks' root steps, one returning nothing and one a nested document
    first, second = env.start(), env.start()
    document = {"total": 12.5, "lines": [{"sku": "a", "qty": 2}], "note": None}

    # When their results are applied in one call
    for step, result in ((first, None), (second, document)):
        assert env.in_one_call(env.report(step, result)).outcome.outcome == "applied"

    # Then each step holds its result exactly: JSON null is a result, not a missing one
    with env.repository.database.transaction() as unit:
        stored = unit.execute_sql(
            "SELECT results IS NULL, results FROM tasker.workflow_steps WHERE step_uuid = %s",
            (first.step_uuid,),
        ) + unit.execute_sql(
            "SELECT results IS NULL, results FROM tasker.workflow_steps WHERE step_uuid = %s",
            (second.step_uuid,),
        )
    assert stored == [(False, None), (False, document)]


def test_it_acks_the_results_and_finishes_the_task_it_finished(env: Env) -> None:
    step = env.start()
    outcomes = []
    while step.step_name != "pick":
        outcomes.append(env.in_one_call(env.report(step, {"step": step.step_name})))
        step = env.next_step()

    assert [o.sent for o in outcomes] == [1, 1, 1]
    assert all(o.finalization is None for o in outcomes)
    assert env.queued(ORCHESTRATION_RESULTS_QUEUE) == 0
    assert env.queued(worker_queue(NAMESPACE)) == 0

    last = env.report(step, {"chosen": []})
    # A decision's outcome needs the template checked first: left to the general path,
    # its message unacked and nothing changed.
    left = env.in_one_call(last)
    assert left.outcome.outcome == "dynamic" and left.sent == 0
    assert env.queued(ORCHESTRATION_RESULTS_QUEUE) == 1
    assert env.task_status(step.task_uuid) == "steps_in_process"


def test_a_failed_step_without_retries_fails_the_task_in_the_same_call(env: Env) -> None:
    step = env.start()
    with env.repository.database.transaction() as unit:
        unit.execute_sql(
            "UPDATE tasker.workflow_steps SET retryable = false WHERE step_uuid = %s",
            (step.step_uuid,),
        )
    hop = env.in_one_call(env.report(step, None, success=False))

    assert hop.sent == 0
    assert hop.finalization is not None and hop.finalization.status == "error"
    assert env.task_status(step.task_uuid) == "error"
    assert env.queued(ORCHESTRATION_RESULTS_QUEUE) == 0


def test_a_redelivered_result_changes_nothing_and_is_acked(env: Env) -> None:
    step = env.start()
    first = env.in_one_call(env.report(step, {"n": 1}))
    again = env.in_one_call(env.report(step, {"n": 1}))

    assert first.outcome.outcome == "applied"
    assert (again.outcome.outcome, again.sent, again.finalization) == ("duplicate", 0, None)
    assert env.queued(ORCHESTRATION_RESULTS_QUEUE) == 0
    assert env.queued(worker_queue(NAMESPACE)) == 1  # b, sent once


def test_an_unknown_worker_queue_fails_the_call_and_changes_nothing(env: Env) -> None:
    step = env.start()
    delivery = env.report(step, {"n": 1})
    with env.repository.database.transaction() as unit:
        unit.execute_sql("SELECT pgmq.drop_queue(%s)", (worker_queue(NAMESPACE),))

    with pytest.raises(Exception, match="worker_hop_tests_queue"):
        env.in_one_call(delivery)
    assert env.queued(ORCHESTRATION_RESULTS_QUEUE) == 1
    assert env.task_status(step.task_uuid) == "steps_in_process"


def _reported_in_lock_order(
    env: Env, firsts: Sequence[StepMessage]
) -> tuple[str, list[tuple[ResultInput, StepMessage]]]:
    """Each step's success reported; the results queue, and each result with its step in
    lock order (by task), as the orchestrator applies a batch."""
    deliveries = [env.report(step, {"n": 1}) for step in firsts]
    found = env.broker.database_message_ids(deliveries)
    assert found is not None
    queue, message_ids = found
    now = datetime.now(UTC)
    entries = [
        ResultInput(message_id, step.step_uuid, step.fence, True, {"n": 1}, None, now, now,
                    "hop-test", {})
        for message_id, step in zip(message_ids, firsts, strict=True)
    ]  # fmt: skip
    return queue, sorted(zip(entries, firsts, strict=True), key=lambda e: e[1].task_uuid.bytes)


def test_results_of_several_tasks_share_one_call(env: Env) -> None:
    firsts = [env.start(n=n) for n in range(3)]
    queue, in_lock_order = _reported_in_lock_order(env, firsts)

    outcomes = env.repository.apply_results_and_dispatch(queue, [e for e, _ in in_lock_order])

    assert [o.sent for o in outcomes] == [1, 1, 1]
    assert env.queued(ORCHESTRATION_RESULTS_QUEUE) == 0
    assert env.queued(worker_queue(NAMESPACE)) == 3


def test_a_batch_sends_each_namespace_its_messages_in_the_batch_order(env: Env) -> None:
    other = RegisteredTemplate(
        env.repository.register_template(_template(OTHER_NAMESPACE)), _template(OTHER_NAMESPACE)
    )
    firsts = [env.start(n=n, template=(env.template, other)[n % 2]) for n in range(4)]
    queue, in_lock_order = _reported_in_lock_order(env, firsts)

    outcomes = env.repository.apply_results_and_dispatch(queue, [e for e, _ in in_lock_order])

    assert [(o.sent, o.namespace) for o in outcomes] == [
        (1, step.namespace) for _, step in in_lock_order
    ]
    assert all(o.messages == () and o.dispatches == () for o in outcomes)
    assert env.queued(ORCHESTRATION_RESULTS_QUEUE) == 0
    for namespace in (NAMESPACE, OTHER_NAMESPACE):
        batch = env.broker.receive(worker_queue(namespace), visibility_timeout=30, max_messages=10)
        sent = [decode(d.body) for d in batch]
        assert [(m.task_uuid, m.step_name) for m in sent if isinstance(m, StepMessage)] == [
            (step.task_uuid, "b") for _, step in in_lock_order if step.namespace == namespace
        ]
