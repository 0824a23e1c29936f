"""When things go wrong: retries to the end, permanent failures, the dead letter queue,
operator actions, cancellation, staleness and task identity, on real processes and both
brokers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tasker.api import schemas
from tasker.cli.cluster import LocalCluster
from tasker.cli.commands import register_templates
from tasker.client import TaskerClient
from tasker.messaging.backends import broker_from_config
from tasker.messaging.messages import worker_queue
from tasker.state.db import Database
from tasker.state.dlq import DeadLetterRepository
from tasker.state.errors import StaleTransitionError
from tasker.state.operations import Operations
from tasker.state.repository import StateRepository
from tasker.state.templates import load_template_directory
from tests.acceptance.conftest import BROKERS, cluster_config

TEMPLATES = Path(__file__).parent / "failure_templates"
HANDLERS = "tests.acceptance.handlers_failures"


class FailureCluster:
    def __init__(self, cluster: LocalCluster, client: TaskerClient, database: Database) -> None:
        self.cluster = cluster
        self.client = client
        self.repository = StateRepository(database)
        self.operations = Operations(database)
        self.dlq = DeadLetterRepository(database)
        self.closing: list[Callable[[], None]] = []

    def run(self, name: str, context: dict[str, Any], timeout: float = 30) -> schemas.Task:
        task_uuid = self.client.create_task("failures", name, "1.0.0", context)
        return self.client.wait(task_uuid, timeout=timeout)

    def step(self, view: schemas.Task, name: str) -> schemas.Step:
        return next(step for step in view.steps if step.name == name)


def _failure_cluster(
    request: pytest.FixtureRequest, make_database: Callable[[], str], **settings: Any
) -> Iterator[FailureCluster]:
    config = cluster_config(
        request, request.param, make_database, sweep_interval_seconds=0.5, **settings
    )
    register_templates(config, load_template_directory(TEMPLATES))
    database = Database(config.database_url)
    cluster = LocalCluster(config, namespaces="failures", handler_modules=HANDLERS)
    client = TaskerClient(config)
    with cluster:
        failures = FailureCluster(cluster, client, database)
        yield failures
    for close in failures.closing:
        close()
    client.close()
    database.close()


@pytest.fixture(scope="module", params=BROKERS)
def failures(
    request: pytest.FixtureRequest, make_database: Callable[[], str]
) -> Iterator[FailureCluster]:
    yield from _failure_cluster(request, make_database)


def test_a_retryable_failure_waits_with_backoff_and_then_succeeds(
    failures: FailureCluster,
) -> None:
    view = failures.run("flaky_workflow", {"fail_times": 2})

    assert view.status == "complete"
    flaky = failures.step(view, "flaky")
    assert (flaky.attempts, flaky.results) == (3, {"result": 3})
    assert failures.step(view, "after_flaky").results == {"result": 3}
    history = [(t.from_state, t.to_state, t.metadata.get("attempt"))
               for t in failures.repository.step_transitions(flaky.step_uuid)]  # fmt: skip
    assert history == [
        ("pending", "enqueued", 1),
        ("enqueued", "in_progress", 1),
        ("in_progress", "enqueued_as_error_for_orchestration", 1),
        ("enqueued_as_error_for_orchestration", "waiting_for_retry", 1),
        ("waiting_for_retry", "enqueued", 2),
        ("enqueued", "in_progress", 2),
        ("in_progress", "enqueued_as_error_for_orchestration", 2),
        ("enqueued_as_error_for_orchestration", "waiting_for_retry", 2),
        ("waiting_for_retry", "enqueued", 3),
        ("enqueued", "in_progress", 3),
        ("in_progress", "enqueued_for_orchestration", 3),
        ("enqueued_for_orchestration", "complete", 3),
    ]


def test_linear_backoff_separates_the_attempts(failures: FailureCluster) -> None:
    view = failures.run("flaky_workflow", {"fail_times": 2})
    flaky = failures.step(view, "flaky")
    transitions = failures.repository.step_transitions(flaky.step_uuid)
    waits = [t for t in transitions if t.to_state == "waiting_for_retry"]
    retries = [t for t in transitions if t.from_state == "waiting_for_retry"]

    pairs = zip(waits, retries, strict=True)
    gaps = [(retry.created_at - wait.created_at).total_seconds() for wait, retry in pairs]

    # linear: 50 ms after the first failure, 100 ms after the second (less up to 10% jitter)
    assert gaps[0] >= 0.045 and gaps[1] >= 0.09


def test_exhausted_retries_fail_the_task_into_the_dead_letter_queue(
    failures: FailureCluster,
) -> None:
    view = failures.run("flaky_workflow", {"fail_times": 5})

    assert view.status == "error"
    flaky = failures.step(view, "flaky")
    assert (flaky.current_state, flaky.attempts) == ("error", 3)
    assert failures.step(view, "after_flaky").current_state == "pending"
    statuses = [t.to_state for t in failures.repository.task_transitions(view.task_uuid)]
    assert statuses[-2:] == ["blocked_by_failures", "error"]
    [entry] = failures.dlq.for_task(view.task_uuid)
    assert (entry.reason, entry.status) == ("retries_exhausted", "pending")
    assert [s["state"] for s in entry.snapshot["steps"]] == ["error", "pending"]


def test_a_permanent_failure_skips_retries(failures: FailureCluster) -> None:
    view = failures.run("permanent_workflow", {})

    assert view.status == "error"
    refuse = failures.step(view, "refuse")
    assert (refuse.current_state, refuse.attempts) == ("error", 1)
    assert refuse.last_error["error_type"] == "permanent_error"
    assert failures.step(view, "never_runs").attempts == 0
    assert failures.dlq.for_task(view.task_uuid)[0].reason == "permanent_failure"


def test_an_unknown_handler_is_a_permanent_failure_naming_the_callable(
    failures: FailureCluster,
) -> None:
    view = failures.run("unknown_handler_workflow", {})

    lost = failures.step(view, "lost")
    assert (view.status, lost.attempts) == ("error", 1)
    assert "failures.no_such_handler" in lost.last_error["message"]
    assert failures.dlq.for_task(view.task_uuid)[0].reason == "unknown_handler"


def test_reset_for_retry_revives_a_failed_task(failures: FailureCluster, tmp_path: Path) -> None:
    gate_file = tmp_path / "open"
    failed = failures.run("gated_workflow", {"gate_file": str(gate_file)})
    assert failed.status == "error"
    gate = failures.step(failed, "gate")

    gate_file.touch()
    failures.operations.reset_step_for_retry(
        failed.task_uuid, gate.step_uuid, actor="ops@example.com", reason="opened the gate"
    )
    view = failures.client.wait(failed.task_uuid, timeout=30)

    assert view.status == "complete"
    assert failures.step(view, "gate").attempts == 1
    assert failures.step(view, "doubled").results == {"result": 42}
    [record] = failures.operations.audit(view.task_uuid)
    assert (record.action, record.actor, record.reason) == (
        "reset_for_retry", "ops@example.com", "opened the gate",
    )  # fmt: skip


def test_complete_manually_hands_its_result_to_dependents(
    failures: FailureCluster, tmp_path: Path
) -> None:
    failed = failures.run("gated_workflow", {"gate_file": str(tmp_path / "never")})
    gate = failures.step(failed, "gate")

    failures.operations.complete_step_manually(
        failed.task_uuid, gate.step_uuid, {"result": 50}, actor="ops", reason="done by hand"
    )
    view = failures.client.wait(failed.task_uuid, timeout=30)

    assert view.status == "complete"
    assert failures.step(view, "doubled").results == {"result": 100}


def test_resolve_manually_lets_dependents_run(failures: FailureCluster, tmp_path: Path) -> None:
    failed = failures.run("gated_workflow", {"gate_file": str(tmp_path / "never")})
    gate = failures.step(failed, "gate")

    failures.operations.resolve_step_manually(
        failed.task_uuid, gate.step_uuid, actor="ops", reason="not needed"
    )
    view = failures.client.wait(failed.task_uuid, timeout=30)

    # The dependent ran with no result from its parent: it consumed None * 2 and failed.
    assert failures.step(view, "gate").current_state == "resolved_manually"
    assert failures.step(view, "doubled").attempts >= 1


def test_an_operator_action_from_a_wrong_state_is_refused(failures: FailureCluster) -> None:
    view = failures.run("flaky_workflow", {"fail_times": 0})
    flaky = failures.step(view, "flaky")

    with pytest.raises(StaleTransitionError, match="actual state 'complete'"):
        failures.operations.reset_step_for_retry(
            view.task_uuid, flaky.step_uuid, actor="ops", reason="oops"
        )


def test_cancel_stops_a_task_and_a_late_result_does_not_revive_it(
    failures: FailureCluster,
) -> None:
    task_uuid = failures.client.create_task(
        "failures", "slow_workflow", "1.0.0", {"sleep_seconds": 1.5}
    )
    _wait_for_step_state(failures, task_uuid, "slow", "enqueued")

    failures.operations.cancel_task(task_uuid, actor="ops", reason="customer withdrew")
    time.sleep(2.5)  # the running attempt finishes and reports meanwhile

    view = failures.client.get_task(task_uuid)
    assert view.status == "cancelled"
    assert [s.current_state for s in view.steps] == ["cancelled", "cancelled"]
    assert failures.step(view, "slow").results == {"result": "slept"}
    assert failures.step(view, "after_slow").attempts == 0


def test_workers_skip_the_queued_steps_of_a_cancelled_task(
    failures: FailureCluster, tmp_path: Path
) -> None:
    # Given six parallel steps and a worker with four handler threads: four run, held at
    # a gate, and two wait in the queue.
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    context = {"runs_file": str(runs), "gate_file": str(gate)}
    task_uuid = failures.client.create_task("failures", "cancel_fan_out_workflow", "1.0.0", context)
    _wait_until(lambda: len(_lines(runs)) == 4)
    running = _lines(runs)

    # When the task is cancelled (through the API, so the workers are told), and then the
    # gate opens and the worker frees its threads for the two queued steps.
    failures.client.cancel_task(task_uuid, "customer withdrew")
    time.sleep(1.0)  # a broadcast takes milliseconds; this only rules out a slow machine
    gate.touch()
    queued = _worker_queue_depth(failures)
    _wait_until(lambda: queued() == 0 and _results_recorded(failures, task_uuid, running))
    time.sleep(1.0)  # a step that (wrongly) started would have noted its run by now

    # Then the queued steps never ran, the running ones' results are recorded, and the
    # task stays cancelled.
    assert sorted(_lines(runs)) == sorted(running)
    view = failures.repository.get_task(task_uuid)
    assert view.status == "cancelled"
    assert {s.current_state for s in view.steps} == {"cancelled"}
    ran = {s.name: s.results for s in view.steps if s.name in running}
    assert ran == {name: {"result": name} for name in running}
    assert all(s.results is None for s in view.steps if s.name not in running)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def _worker_queue_depth(failures: FailureCluster) -> Callable[[], int]:
    broker = broker_from_config(failures.cluster.config)
    failures.closing.append(broker.close)
    return lambda: broker.queue_stats(worker_queue("failures")).ready


def _results_recorded(failures: FailureCluster, task_uuid: UUID, names: list[str]) -> bool:
    view = failures.repository.get_task(task_uuid)
    return all(s.results is not None for s in view.steps if s.name in names)


def test_strict_identity_answers_a_duplicate_with_the_existing_task(
    failures: FailureCluster,
) -> None:
    first = failures.run("strict_identity_workflow", {"fail_times": 0, "order": 7})
    config = failures.cluster.config
    registered = failures.repository.get_template("failures", "strict_identity_workflow", "1.0.0")
    from tasker.ids import new_id
    from tasker.state.admission import check_request
    from tasker.state.repository import TaskSpec

    identity = check_request(
        registered.template, {"order": 7, "fail_times": 0}, idempotency_key=None,
        max_context_bytes=config.max_context_bytes,
    )  # fmt: skip
    with failures.repository.database.transaction() as unit:
        again = failures.repository.create_task(
            unit, registered, TaskSpec(task_uuid=new_id()), identity_hash=identity
        )

    assert (again.created, again.task_uuid) == (False, first.task_uuid)


def _wait_for_step_state(
    failures: FailureCluster, task_uuid: UUID, step: str, state: str, timeout: float = 10
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            view = failures.client.get_task(task_uuid)
            if failures.step(view, step).current_state == state:
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError(f"step {step} never reached {state}")


@pytest.fixture(scope="module", params=BROKERS)
def impatient(
    request: pytest.FixtureRequest, make_database: Callable[[], str]
) -> Iterator[FailureCluster]:
    """A cluster whose staleness limit for steps in process is about one second."""
    yield from _failure_cluster(request, make_database, stale_steps_in_process_minutes=1 / 60)


def test_a_task_stuck_in_process_goes_stale_into_the_dead_letter_queue(
    impatient: FailureCluster,
) -> None:
    view = impatient.run("slow_workflow", {"sleep_seconds": 4}, timeout=20)

    assert view.status == "error"
    [entry] = impatient.dlq.for_task(view.task_uuid)
    assert entry.reason == "staleness"
    assert entry.details["stuck_in"] == "steps_in_process"
