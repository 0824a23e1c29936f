"""Poison messages of a known task open its dead-letter investigation record, on both brokers.

An in-process orchestrator (real PostgreSQL, real broker); the test plays the worker: it
takes the step message and answers with a result the orchestrator can never handle.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
import pytest

from tasker.actors.orchestrator import Orchestrator
from tasker.cli.commands import prepare_database, register_templates
from tasker.config import Config, load_config
from tasker.examples import TEMPLATE_DIRECTORY
from tasker.messaging.backends import broker_from_config
from tasker.messaging.broker import DeadLetter, dead_letter_queue
from tasker.messaging.messages import (
    ORCHESTRATION_RESULTS_QUEUE,
    StepMessage,
    StepResultMessage,
    TaskRequestMessage,
    decode,
    encode,
    worker_queue,
)
from tasker.state.db import Database
from tasker.state.dlq import DeadLetterRepository, DlqEntry
from tasker.state.poison import PoisonRecords
from tasker.state.repository import StateRepository
from tasker.state.templates import load_template_directory

BROKERS = [
    pytest.param("pgmq", marks=pytest.mark.postgres),
    pytest.param("rabbitmq", marks=[pytest.mark.postgres, pytest.mark.rabbitmq]),
]
STEP_QUEUE = worker_queue("examples")
# A result the database refuses, every time: stands for any result that can never be applied.
REFUSE_POISON = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'this result can never be stored'; END $$;
CREATE TRIGGER refuse_poison BEFORE UPDATE OF results ON tasker.workflow_steps
    FOR EACH ROW WHEN (NEW.results ? 'poison') EXECUTE FUNCTION refuse_poison();
"""


class Harness:
    def __init__(self, config: Config) -> None:
        self.database = Database(config.database_url, max_size=4)
        self.orchestrator = Orchestrator(config, broker_from_config(config), self.database)
        self.orchestrator.start()
        self.worker = broker_from_config(config)  # the test's own side of the broker
        self.worker.ensure_queue(STEP_QUEUE)
        self.repository = StateRepository(self.database)
        self.dlq = DeadLetterRepository(self.database)

    def start_task(self) -> StepMessage:
        """Create a linear task and take its first step message, as a worker would."""
        request = TaskRequestMessage(
            uuid.uuid4(), "examples", "linear_workflow", "1.0.0", {"even_number": 2}
        )
        self.orchestrator.create_task(request)
        while True:
            deliveries = self.worker.receive(STEP_QUEUE, visibility_timeout=60, wait=10)
            assert deliveries, "no step message arrived"
            message = decode(deliveries[0].body)
            self.worker.ack(deliveries[0])
            if isinstance(message, StepMessage) and message.task_uuid == request.task_uuid:
                return message

    def reply(self, body: bytes) -> None:
        self.worker.send(ORCHESTRATION_RESULTS_QUEUE, body)

    def entries(self, task_uuid: UUID, timeout: float = 20) -> list[DlqEntry]:
        deadline = time.monotonic() + timeout
        while not (entries := self.dlq.for_task(task_uuid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return entries

    def dead_letters(self) -> list[DeadLetter]:
        queue = dead_letter_queue(ORCHESTRATION_RESULTS_QUEUE)
        deliveries = self.worker.receive(queue, max_messages=10, wait=5)
        return [msgspec.json.decode(d.body, type=DeadLetter) for d in deliveries]

    def close(self) -> None:
        self.orchestrator.stop()
        for closeable in (self.worker, self.orchestrator.broker, self.database):
            closeable.close()


@pytest.fixture(params=BROKERS)
def harness(request: pytest.FixtureRequest, make_database: Callable[[], str]) -> Iterator[Harness]:
    settings: dict[str, Any] = {
        "database_url": make_database(),
        "broker": request.param,
        "poll_interval_seconds": 0.2,
        "visibility_timeout_seconds": 10,
        "max_deliveries": 2,
        "api_enabled": False,
    }
    if request.param == "rabbitmq":
        settings["rabbitmq_url"] = request.getfixturevalue("make_vhost")(request)
    config = load_config(overrides=settings, environ={})
    prepare_database(config)
    register_templates(config, load_template_directory(TEMPLATE_DIRECTORY))
    with Database(config.database_url, max_size=1).transaction() as unit:
        unit.execute_sql(REFUSE_POISON)
    harness = Harness(config)
    yield harness
    harness.close()


def result_for(step: StepMessage, result: Any) -> bytes:
    now = datetime.now(UTC)
    return encode(
        StepResultMessage(
            task_uuid=step.task_uuid, step_uuid=step.step_uuid, attempt=step.attempt,
            status="success", started_at=now, finished_at=now, worker_id="test",
            result=result, fence=step.fence,
        )
    )  # fmt: skip


def test_a_result_that_can_never_be_applied_fails_its_step_and_task_into_the_dlq(
    harness: Harness,
) -> None:
    step = harness.start_task()

    harness.reply(result_for(step, {"poison": True}))

    [entry] = harness.entries(step.task_uuid)
    assert (entry.reason, entry.status) == ("poison_message", "pending")
    assert entry.details["source_queue"] == ORCHESTRATION_RESULTS_QUEUE
    assert "can never be stored" in entry.details["dead_letter_reason"]
    assert entry.snapshot["task"]["status"] == "error"
    assert harness.repository.get_task(step.task_uuid).status == "error"
    assert _step(harness, step).current_state == "error"
    [letter] = harness.dead_letters()
    assert "can never be stored" in letter.reason
    assert msgspec.json.decode(letter.body)["step_uuid"] == str(step.step_uuid)


def test_an_undecodable_result_naming_its_task_is_recorded_and_the_task_carries_on(
    harness: Harness,
) -> None:
    step = harness.start_task()
    broken = {"kind": "step_result", "task_uuid": str(step.task_uuid), "status": "maybe"}

    harness.reply(msgspec.json.encode(broken))

    [entry] = harness.entries(step.task_uuid)
    assert entry.reason == "poison_message"
    assert "undecodable" in entry.details["dead_letter_reason"]
    assert harness.dead_letters()[0].reason.startswith("undecodable")
    # It named no step dispatch: the real result still moves the task on.
    harness.reply(result_for(step, {"result": 4}))
    deadline = time.monotonic() + 20
    while (first := _step(harness, step)).current_state != "complete":
        assert time.monotonic() < deadline, f"the step stayed {first.current_state}"
        time.sleep(0.1)
    assert first.results == {"result": 4}
    assert harness.repository.get_task(step.task_uuid).status != "error"


def _step(harness: Harness, step: StepMessage) -> Any:
    view = harness.repository.get_task(step.task_uuid)
    return next(s for s in view.steps if s.step_uuid == step.step_uuid)


def test_records_are_one_per_task_and_a_stale_dispatch_changes_no_state(
    harness: Harness,
) -> None:
    step = harness.start_task()
    records = PoisonRecords(harness.database)

    stale = records.open(step.task_uuid, step_uuid=step.step_uuid, fence=step.fence + 1,
                         details={"dead_letter_reason": "stale"})  # fmt: skip
    again = records.open(step.task_uuid, step_uuid=step.step_uuid, fence=step.fence,
                         details={"dead_letter_reason": "current"})  # fmt: skip
    unknown = records.open(uuid.uuid4(), step_uuid=None, fence=None, details={})

    assert stale is not None and (stale.entry_opened, stale.step_failed) == (True, False)
    assert stale.task_status != "error"
    assert again is not None and (again.entry_opened, again.step_failed) == (False, True)
    assert (again.task_status, unknown) == ("error", None)
    assert [e.details["dead_letter_reason"] for e in harness.dlq.for_task(step.task_uuid)] == [
        "stale"
    ]
