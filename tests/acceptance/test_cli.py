"""The `tasker` command as an operator uses it, against a running cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.conftest import RunningCluster


def tasker(cluster_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tasker", *args],
        env=cluster_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def cluster_env(example_cluster: RunningCluster) -> dict[str, str]:
    return example_cluster.cluster.environment()


def test_task_create_waits_and_prints_the_final_task_as_json(cluster_env: dict[str, str]) -> None:
    finished = tasker(
        cluster_env, "task", "create", "examples", "linear_workflow", "--version", "1.0.0",
        "--context", '{"even_number": 2}', "--wait", "--output", "json",
    )  # fmt: skip

    assert finished.returncode == 0, finished.stderr
    task = json.loads(finished.stdout)
    assert task["status"] == "complete"
    assert task["completion_percentage"] == 100.0
    assert [(s["name"], s["current_state"], s["results"]) for s in task["steps"]] == [
        ("linear_step_1", "complete", {"result": 4}),
        ("linear_step_2", "complete", {"result": 16}),
        ("linear_step_3", "complete", {"result": 256}),
        ("linear_step_4", "complete", {"result": 65536}),
    ]


def test_task_get_shows_a_table_of_steps(cluster_env: dict[str, str]) -> None:
    created = tasker(
        cluster_env, "task", "create", "examples", "diamond_workflow",
        "--context", '{"even_number": 2}', "--wait", "--output", "json",
    )  # fmt: skip
    task_uuid = json.loads(created.stdout)["task_uuid"]

    shown = tasker(cluster_env, "task", "get", task_uuid)

    assert shown.returncode == 0, shown.stderr
    assert f"task {task_uuid}" in shown.stdout
    assert "status complete" in shown.stdout
    assert "diamond_end" in shown.stdout and '{"result": 1024}' in shown.stdout


def test_a_context_that_breaks_the_input_schema_is_refused_naming_the_field(
    cluster_env: dict[str, str],
) -> None:
    finished = tasker(
        cluster_env, "task", "create", "examples", "linear_workflow", "--context",
        '{"even_number": 3}', "--wait",
    )  # fmt: skip

    assert finished.returncode == 1
    assert "linear_workflow" in finished.stderr
    assert "context.even_number" in finished.stderr and "multiple of 2" in finished.stderr


def test_an_unknown_template_is_named(cluster_env: dict[str, str]) -> None:
    finished = tasker(cluster_env, "task", "create", "examples", "no_such_flow", "--wait")

    assert finished.returncode == 1
    assert "examples/no_such_flow@1.0.0" in finished.stderr


def test_task_get_of_an_unknown_task_says_so(cluster_env: dict[str, str]) -> None:
    finished = tasker(cluster_env, "task", "get", "01a2056e-d6b5-7b04-ba7c-536f331142bd")

    assert finished.returncode == 1
    assert "does not exist" in finished.stderr


@pytest.mark.postgres
def test_db_migrate_is_idempotent_and_safe_from_two_processes_at_once(
    make_database: Callable[[], str],
) -> None:
    env = {"TASKER_DATABASE_URL": make_database(), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "tasker", "db", "migrate"]

    racing = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE) for _ in range(2)]
    codes = [process.wait(timeout=120) for process in racing]
    again = subprocess.run(command, env=env, capture_output=True, timeout=120)

    assert codes == [0, 0] and again.returncode == 0
    with psycopg.connect(env["TASKER_DATABASE_URL"]) as connection:
        versions = connection.execute("SELECT version FROM tasker.schema_migrations").fetchall()
        pgmq = connection.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'pgmq'")
        assert sorted(v for (v,) in versions) == list(range(1, len(versions) + 1))
        assert pgmq.fetchone() == (1,)


def test_template_validate_names_the_file_the_step_and_the_problem(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "name: broken\nnamespace_name: ns\nversion: 1.0.0\nsteps:\n"
        "  - name: a\n    handler: {callable: x}\n    dependencies: [b]\n"
        "  - name: b\n    handler: {callable: y}\n    dependencies: [a]\n"
    )

    finished = tasker({}, "template", "validate", str(broken))

    assert finished.returncode == 1
    assert str(broken) in finished.stderr and "cycle" in finished.stderr
    assert "a -> b -> a" in finished.stderr or "b -> a -> b" in finished.stderr


def test_task_create_wait_shows_a_progress_bar_then_the_result(
    cluster_env: dict[str, str],
) -> None:
    finished = tasker(
        cluster_env, "task", "create", "examples", "linear_workflow",
        "--context", '{"even_number": 2}', "--wait",
    )  # fmt: skip

    assert finished.returncode == 0, finished.stderr
    assert "linear_workflow [" in finished.stderr and "4/4 steps" in finished.stderr
    assert "status complete" in finished.stdout


def test_task_get_draws_the_dag_with_each_steps_state(cluster_env: dict[str, str]) -> None:
    created = tasker(
        cluster_env, "task", "create", "examples", "diamond_workflow",
        "--context", '{"even_number": 2}', "--wait", "--output", "json",
    )  # fmt: skip
    task_uuid = json.loads(created.stdout)["task_uuid"]

    shown = tasker(cluster_env, "task", "get", task_uuid).stdout

    dag = shown.split("DAG\n", 1)[1].splitlines()
    assert dag[0].split()[:3] == ["[1]", "[x]", "diamond_start"]
    assert dag[-1].split()[:4] == ["[3]", "[x]", "diamond_end", "complete"]
    assert dag[-1].endswith("<- diamond_branch_b, diamond_branch_c")


def test_task_list_steps_and_audit(cluster_env: dict[str, str]) -> None:
    created = tasker(
        cluster_env, "task", "create", "examples", "linear_workflow",
        "--context", '{"even_number": 2}', "--wait", "--output", "json",
    )  # fmt: skip
    task_uuid = json.loads(created.stdout)["task_uuid"]

    listed = json.loads(tasker(cluster_env, "task", "list", "--output", "json").stdout)
    steps = tasker(cluster_env, "task", "steps", task_uuid)
    audit = tasker(cluster_env, "task", "audit", task_uuid, "--step", "linear_step_2")

    assert task_uuid in [task["task_uuid"] for task in listed["tasks"]]
    assert "linear_step_4" in steps.stdout and steps.returncode == 0
    assert "enqueued_for_orchestration" in audit.stdout and audit.returncode == 0


def test_template_list_and_show(cluster_env: dict[str, str]) -> None:
    listed = tasker(cluster_env, "template", "list")
    shown = tasker(cluster_env, "template", "show", "examples", "diamond_workflow")

    assert "diamond_workflow" in listed.stdout and "linear_workflow" in listed.stdout
    assert "examples.diamond.end" in shown.stdout
    assert "<- diamond_branch_b, diamond_branch_c" in shown.stdout


def test_health_worker_list_dlq_stats_and_config_show(cluster_env: dict[str, str]) -> None:
    health = tasker(cluster_env, "health")
    workers = json.loads(tasker(cluster_env, "worker", "list", "--output", "json").stdout)
    stats = tasker(cluster_env, "dlq", "stats", "--output", "json")
    config = tasker({**cluster_env, "TASKER_JWT_SECRET": "hush-hush"}, "config", "show")

    assert health.returncode == 0 and "status healthy" in health.stdout
    assert "worker_examples_queue" in health.stdout
    assert any(worker["alive"] and "examples" in worker["namespaces"] for worker in workers)
    assert json.loads(stats.stdout)["total"] >= 0
    assert 'jwt_secret = "***"' in config.stdout and "hush-hush" not in config.stdout


def test_an_unreachable_api_is_named_with_what_to_set(cluster_env: dict[str, str]) -> None:
    finished = tasker(cluster_env, "--url", "http://127.0.0.1:9", "task", "list")

    assert finished.returncode == 1
    assert "cannot reach the Tasker API at http://127.0.0.1:9" in finished.stderr
    assert "TASKER_API_URL" in finished.stderr
