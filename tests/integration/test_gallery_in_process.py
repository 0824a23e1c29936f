"""The gallery examples in one process: the real state layer and the real handlers, with
the broker replaced by a loop (claim -> message -> handler -> result -> apply).

The same expectations run end to end on both brokers in tests/acceptance/test_gallery.py;
here a failure points at the engine or a handler, not at processes or messaging.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import msgspec
import pytest

from tasker.actors.step_dispatch import step_message
from tasker.examples import HANDLER_MODULES, TEMPLATE_DIRECTORY
from tasker.handlers.execution import execute_step
from tasker.handlers.registry import HandlerRegistry
from tasker.handlers.result import StepHandlerResult
from tasker.state.db import Database
from tasker.state.dispatch import DispatchStep
from tasker.state.migrate import migrate
from tasker.state.repository import RegisteredTemplate, RetryDefaults, StateRepository
from tasker.state.templates import load_template_directory
from tests.gallery_expectations import GALLERY, Expectation, check
from tests.integration.dynamic_harness import Engine

pytestmark = pytest.mark.postgres


class GalleryRunner:
    def __init__(self, engine: Engine, templates: dict[str, RegisteredTemplate]) -> None:
        self.engine = engine
        self.templates = templates
        self.registry = HandlerRegistry()
        self.registry.load_modules(HANDLER_MODULES.split(","))

    def run(self, expected: Expectation, timeout: float = 30.0) -> UUID:
        task = self.engine.create(self.templates[expected.template], **expected.context)
        deadline = time.monotonic() + timeout
        while self.engine.status(task) not in ("complete", "error"):
            assert time.monotonic() < deadline, self.engine.steps(task)
            claimed = self.engine.claim()
            for entry in claimed.values():
                self._run_one(entry)
            if not claimed:
                time.sleep(0.05)  # a retry's backoff
                self.engine.ready = self.engine.repository.due_retry_steps()
        return task

    def _run_one(self, entry: DispatchStep) -> None:
        message = step_message(entry.step, inputs=entry.inputs, checkpoint=entry.checkpoint)
        outcome = execute_step(self.registry, message)
        yielded = outcome.metadata.get("checkpoint_yield")
        if isinstance(yielded, dict):
            self.engine.report(entry, checkpoint=yielded)
        elif outcome.is_success:
            self.engine.report(entry, _json(outcome.result))
        else:
            self.engine.report(entry, error=_error(outcome))


def _json(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))  # as the wire would carry it


def _error(outcome: StepHandlerResult) -> dict[str, Any]:
    return {
        "message": outcome.error_message,
        "error_type": outcome.error_type,
        "retryable": outcome.retryable,
        "retry_after_seconds": outcome.retry_after_seconds,
    }


@pytest.fixture(scope="module")
def runner(make_database: Callable[[], str]) -> Iterator[GalleryRunner]:
    url = make_database()
    migrate(url)
    database = Database(url, max_size=2)
    repository = StateRepository(database, RetryDefaults(jitter=0.0))
    templates = {
        t.name: RegisteredTemplate(repository.register_template(t), t)
        for t in load_template_directory(TEMPLATE_DIRECTORY)
    }
    yield GalleryRunner(Engine(repository), templates)
    database.close()


@pytest.mark.parametrize("example", sorted(GALLERY))
def test_gallery_example_produces_its_expected_steps_and_results(
    runner: GalleryRunner, example: str
) -> None:
    expected = GALLERY[example]

    task = runner.run(expected)

    check(expected, runner.engine.status(task), runner.engine.steps(task))


def test_environment_overrides_reach_the_created_steps(runner: GalleryRunner) -> None:
    engine = runner.engine
    by_env = {
        env: {t.name: t for t in load_template_directory(TEMPLATE_DIRECTORY, env=env)}
        for env in ("test", "production")
    }
    timeouts: dict[str, dict[str, float | None]] = {}
    for env, templates in by_env.items():
        template = templates["conditional_approval"]
        registered = engine.register_template(
            msgspec.structs.replace(template, version=f"1.0.{len(timeouts) + 90}")
        )
        task = engine.create(registered, amount=10, requester="ada")
        timeouts[env] = _step_timeouts(engine, task)

    assert timeouts["test"] == {"validate_request": 10.0, "routing_decision": 10.0}
    assert timeouts["production"] == {"validate_request": None, "routing_decision": None}


def _step_timeouts(engine: Engine, task: UUID) -> dict[str, float | None]:
    with engine.repository.database.transaction() as unit:
        rows = unit.execute_sql(
            "SELECT name, timeout_seconds FROM tasker.workflow_steps WHERE task_uuid = %s",
            (task,),
        )
    return {row[0]: row[1] for row in rows}
