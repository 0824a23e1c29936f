"""The example workflows run end to end: orchestrator and worker as separate processes,
on real PostgreSQL with each real broker."""

from __future__ import annotations

import os

from tests.acceptance.conftest import RunningCluster

LINEAR_RESULTS = {
    "linear_step_1": 36,
    "linear_step_2": 1296,
    "linear_step_3": 1679616,
    "linear_step_4": 2821109907456,
}
DIAMOND_RESULTS = {
    "diamond_start": 36,
    "diamond_branch_b": 1296,
    "diamond_branch_c": 46656,
    "diamond_end": 1296 * 46656,
}


def _run(cluster: RunningCluster, name: str) -> dict[str, object]:
    task_uuid = cluster.client.create_task("examples", name, "1.0.0", {"even_number": 6})
    view = cluster.client.wait(task_uuid, timeout=60)
    assert view.status == "complete"
    assert view.completed_steps == view.total_steps == 4
    assert {step.current_state for step in view.steps} == {"complete"}
    assert all(step.attempts == 1 for step in view.steps)
    return {step.name: step.results for step in view.steps}


def test_linear_workflow_computes_each_step_from_its_parent(
    example_cluster: RunningCluster,
) -> None:
    results = _run(example_cluster, "linear_workflow")

    assert results == {name: {"result": value} for name, value in LINEAR_RESULTS.items()}


def test_diamond_workflow_joins_both_branches(example_cluster: RunningCluster) -> None:
    results = _run(example_cluster, "diamond_workflow")

    assert results == {name: {"result": value} for name, value in DIAMOND_RESULTS.items()}


def test_workflows_run_in_separate_processes(example_cluster: RunningCluster) -> None:
    pids = {process.pid for process in example_cluster.cluster.processes}

    assert len(pids) == 2 and os.getpid() not in pids
    assert all(process.poll() is None for process in example_cluster.cluster.processes)


def test_many_tasks_in_parallel_all_complete(example_cluster: RunningCluster) -> None:
    client = example_cluster.client
    names = ["linear_workflow", "diamond_workflow"] * 10
    task_ids = [client.create_task("examples", name, "1.0.0", {"even_number": 2}) for name in names]

    finals = [client.wait(task_uuid, timeout=60) for task_uuid in task_ids]

    assert [view.status for view in finals] == ["complete"] * len(names)
    step_4 = {s.name: s.results for s in finals[0].steps}["linear_step_4"]
    assert step_4 == {"result": 65536}
