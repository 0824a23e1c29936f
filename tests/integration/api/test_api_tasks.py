"""The REST API end to end: Tasker's paths and shapes, errors with codes naming fields."""

from __future__ import annotations

import time
from uuid import UUID

import httpx
import pytest

from tasker.api.schemas import Task
from tasker.client import TaskerApiError, TaskerClient
from tests.integration.api.conftest import InProcessCluster

pytestmark = pytest.mark.postgres


def _finished_linear(client: TaskerClient) -> Task:
    return client.wait(
        client.create_task("examples", "linear_workflow", "1.0.0", {"even_number": 2})
    )


def test_a_task_created_over_http_runs_to_completion(client: TaskerClient) -> None:
    task_uuid = client.create_task("examples", "diamond_workflow", "1.0.0", {"even_number": 2})

    task = client.wait(task_uuid, timeout=60)

    assert (task.status, task.execution_status, task.completion_percentage) == (
        "complete", "all_complete", 100.0,
    )  # fmt: skip
    assert task.completed_steps == task.total_steps == 4
    end = next(step for step in task.steps if step.name == "diamond_end")
    assert end.results == {"result": 1024}
    assert (end.total_parents, end.completed_parents, end.dependencies_satisfied) == (2, 2, True)


def test_the_long_poll_answers_when_the_task_finishes_not_at_the_deadline(
    client: TaskerClient,
) -> None:
    task_uuid = client.create_task("examples", "linear_workflow", "1.0.0", {"even_number": 2})
    started = time.monotonic()

    task = client.get_task(task_uuid, wait_seconds=30)

    assert task.status == "complete"
    assert time.monotonic() - started < 15


def test_tasks_are_listed_newest_first_with_pagination_and_filters(client: TaskerClient) -> None:
    created = [
        client.create_task("examples", "linear_workflow", "1.0.0", {"even_number": 2})
        for _ in range(3)
    ]

    page = client.list_tasks(page=1, per_page=2, namespace="examples", name="linear_workflow")

    assert [task.task_uuid for task in page.tasks] == created[::-1][:2]
    assert page.pagination.per_page == 2 and page.pagination.has_next
    assert page.pagination.total_count >= 3 and not page.pagination.has_previous
    assert client.list_tasks(namespace="no_such_namespace").tasks == []


def test_steps_and_audit_are_readable(client: TaskerClient) -> None:
    task = _finished_linear(client)

    steps = client.steps(task)
    first = client.get_step(task, steps[0].step_uuid)
    audit = client.audit(task, first.step_uuid)

    assert [s.name for s in steps] == [f"linear_step_{n}" for n in range(1, 5)]
    assert first.results == {"result": 4}
    assert audit.transitions[0].to_state == "enqueued"
    assert audit.transitions[-1].to_state == "complete"
    assert client.audit(task).transitions[-1].to_state == "complete"


def test_an_unknown_task_is_404_with_a_stable_code(client: TaskerClient) -> None:
    with pytest.raises(TaskerApiError) as raised:
        client.get_task(UUID("01a2056e-d6b5-7b04-ba7c-536f331142bd"))

    assert (raised.value.status, raised.value.code) == (404, "task_not_found")
    assert "does not exist" in str(raised.value)


def test_a_context_against_the_input_schema_is_422_naming_the_field(client: TaskerClient) -> None:
    with pytest.raises(TaskerApiError) as raised:
        client.create_task("examples", "linear_workflow", "1.0.0", {"even_number": 3})

    error = raised.value
    assert (error.status, error.code, error.field) == (422, "invalid_task_request", "context")
    assert any("context.even_number" in detail for detail in error.details)


def test_an_unknown_template_is_404(client: TaskerClient) -> None:
    with pytest.raises(TaskerApiError) as raised:
        client.create_task("examples", "no_such_flow", "1.0.0", {})

    assert (raised.value.status, raised.value.code) == (404, "template_not_found")
    assert "examples/no_such_flow@1.0.0" in str(raised.value)


def test_a_duplicate_idempotency_key_is_409_with_the_existing_task(client: TaskerClient) -> None:
    first = client.create_task(
        "examples", "linear_workflow", "1.0.0", {"even_number": 2}, idempotency_key="order-42"
    )
    with pytest.raises(TaskerApiError) as raised:
        client.create_task(
            "examples", "linear_workflow", "1.0.0", {"even_number": 2}, idempotency_key="order-42"
        )

    assert (raised.value.status, raised.value.code) == (409, "duplicate_task")
    assert raised.value.task_uuid == first


@pytest.mark.parametrize(
    ("path", "field"),
    [("/v1/tasks?per_page=0", "per_page"), ("/v1/tasks?status=nonsense", "status")],
)
def test_a_bad_query_parameter_is_400_naming_it(
    api_cluster: InProcessCluster, path: str, field: str
) -> None:
    response = httpx.get(api_cluster.url + path)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_request", field)
    assert field in error["message"]


def test_a_body_with_a_wrong_type_is_400_naming_the_field(api_cluster: InProcessCluster) -> None:
    body = {"namespace": "examples", "name": "linear_workflow", "priority": "high"}

    response = httpx.post(api_cluster.url + "/v1/tasks", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "priority"


def test_cancelling_a_finished_task_is_409(client: TaskerClient) -> None:
    task = _finished_linear(client)

    with pytest.raises(TaskerApiError) as raised:
        client.cancel_task(task, "too late")

    assert (raised.value.status, raised.value.code) == (409, "invalid_state")


def test_an_operator_action_on_a_complete_step_is_409(client: TaskerClient) -> None:
    task = _finished_linear(client)

    with pytest.raises(TaskerApiError) as raised:
        client.step_action(task, task.steps[0].step_uuid, "reset_for_retry", reason="why not")

    assert (raised.value.status, raised.value.code) == (409, "invalid_state")


def test_templates_are_listed_and_shown_with_their_dag(client: TaskerClient) -> None:
    listed = client.list_templates("examples")
    diamond = client.get_template("examples", "diamond_workflow", "1.0.0")

    assert {(t.name, t.step_count) for t in listed.templates} >= {
        ("linear_workflow", 4), ("diamond_workflow", 4),
    }  # fmt: skip
    end = next(step for step in diamond.steps if step.name == "diamond_end")
    assert sorted(end.dependencies) == ["diamond_branch_b", "diamond_branch_c"]


def test_the_dead_letter_queue_answers(client: TaskerClient) -> None:
    assert client.dlq_stats().total >= 0
    assert client.dlq_list(status="pending").pagination.page == 1


def test_health_checks_the_database_the_broker_queues_and_workers(
    api_cluster: InProcessCluster, client: TaskerClient
) -> None:
    ready = httpx.get(api_cluster.url + "/health/ready")
    live = httpx.get(api_cluster.url + "/health/live")
    detailed = client.health()

    assert (ready.status_code, live.status_code) == (200, 200)
    assert set(ready.json()["checks"]) == {"database", "broker"}
    assert detailed.status == "healthy"
    assert "worker_examples_queue" in {queue.queue for queue in detailed.queues}


def test_the_openapi_document_describes_the_api(api_cluster: InProcessCluster) -> None:
    document = httpx.get(api_cluster.url + "/openapi.json").json()

    assert document["openapi"].startswith("3.")
    assert {"/v1/tasks", "/v1/tasks/{task_uuid}", "/v1/dlq", "/health/ready"} <= set(
        document["paths"]
    )


def test_task_creation_is_refused_with_retry_after_while_step_queues_are_too_deep(
    api_cluster: InProcessCluster, client: TaskerClient
) -> None:
    from tasker.config import with_overrides
    from tasker.messaging.messages import worker_queue
    from tasker.state.templates import load_template_text

    # Given a namespace whose queue nobody consumes, three messages deep, over a limit of 2
    orchestrator = api_cluster.orchestrator
    throttled = load_template_text(
        "name: backlog\nnamespace_name: throttled\nversion: 1.0.0\n"
        "steps:\n  - {name: only, handler: {callable: nobody.home}}\n"
    )
    orchestrator.repository.register_template(throttled)
    api_cluster.broker.ensure_queue(worker_queue("throttled"))
    api_cluster.broker.send_batch(worker_queue("throttled"), [b"{}"] * 3)
    original = orchestrator.config
    orchestrator.config = with_overrides(original, backpressure_queue_depth=2)
    orchestrator._depth_checked_at = float("-inf")
    try:
        # When a client asks for a task
        response = httpx.post(
            f"{api_cluster.url}/v1/tasks",
            json={
                "namespace": "examples",
                "name": "linear_workflow",
                "context": {"even_number": 2},
            },
        )
    finally:
        orchestrator.config = original
        orchestrator._depth_checked_at = float("-inf")

    # Then it is told to come back later, and when
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "backpressure"
    assert response.headers["Retry-After"] == str(original.backpressure_retry_after_seconds)
