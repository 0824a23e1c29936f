"""Scale-out: 2 orchestrators and 4 worker processes share one batch of example workflows.

Each broker gets a fresh database (and vhost); the batch is linear and diamond workflows,
half each (4 steps a task). Tasks are submitted through the first orchestrator's API from
8 threads; the clock runs from the first submission until PostgreSQL (read through the API)
counts every task complete. Prints the time and tasks/s, and records them in
benchmarks/results/scale_out.json.

TASKER_SCALE_OUT_TASKS sets the batch size (default 1000).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from tasker.cli.cluster import LocalCluster
from tasker.client import TaskerClient
from tests.acceptance.conftest import BROKERS, EXAMPLE_HANDLERS, cluster_config
from tests.deploy.deployfiles import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TASKS = int(os.environ.get("TASKER_SCALE_OUT_TASKS", "1000"))
ORCHESTRATORS = 2
WORKERS = 4
DEADLINE_SECONDS = 300.0
RESULTS = ROOT / "benchmarks" / "results" / "scale_out.json"
WORKFLOWS = ("linear_workflow", "diamond_workflow")


def _count(client: TaskerClient, status: str) -> int:
    listing = client.list_tasks(status=status, per_page=1)
    return listing.pagination.total_count


def _wait_all_complete(client: TaskerClient, deadline: float) -> int:
    complete = 0
    while time.monotonic() < deadline:
        complete = _count(client, "complete")
        if complete >= TASKS:
            return complete
        failed = _count(client, "error")
        assert failed == 0, f"{failed} task(s) ended in error"
        time.sleep(0.25)
    return complete


@pytest.mark.parametrize("broker", BROKERS)
def test_two_orchestrators_and_four_workers_complete_every_task(
    request: pytest.FixtureRequest, make_database: Callable[[], str], broker: str
) -> None:
    config = cluster_config(request, broker, make_database)
    cluster = LocalCluster(
        config,
        namespaces="examples",
        handler_modules=EXAMPLE_HANDLERS,
        orchestrators=ORCHESTRATORS,
        workers=WORKERS,
    )
    with cluster:
        client = TaskerClient(cluster.api_url)
        try:
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=8) as pool:
                ids = list(
                    pool.map(
                        lambda i: client.create_task(
                            "examples", WORKFLOWS[i % 2], "1.0.0", {"even_number": 2}
                        ),
                        range(TASKS),
                    )
                )
            submitted = time.monotonic() - started
            complete = _wait_all_complete(client, started + DEADLINE_SECONDS)
            seconds = time.monotonic() - started
            alive = all(process.poll() is None for process in cluster.processes)
        finally:
            client.close()
    result = {
        "broker": broker,
        "orchestrators": ORCHESTRATORS,
        "workers": WORKERS,
        "worker_concurrency": config.concurrency,
        "tasks": TASKS,
        "steps": TASKS * 4,
        "submit_seconds": round(submitted, 2),
        "seconds": round(seconds, 2),
        "tasks_per_second": round(TASKS / seconds, 1),
        "steps_per_second": round(TASKS * 4 / seconds, 1),
    }
    print(
        f"\nscale-out {broker}: {complete}/{TASKS} tasks ({TASKS * 4} steps) complete on "
        f"{ORCHESTRATORS} orchestrators + {WORKERS} workers in {seconds:.1f}s = "
        f"{result['tasks_per_second']} tasks/s (submitting took {submitted:.1f}s); "
        f"exit codes {sorted(cluster.exit_codes.values())}"
    )
    assert len(set(ids)) == TASKS
    assert complete == TASKS, f"{complete}/{TASKS} complete after {seconds:.0f}s"
    _record(result)
    assert alive, "a process died during the run"
    assert all(code == 0 for code in cluster.exit_codes.values()), cluster.exit_codes


def _record(result: dict[str, Any]) -> None:
    """Merge this broker's numbers into benchmarks/results/scale_out.json."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        recorded: dict[str, Any] = json.loads(RESULTS.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        recorded = {}
    recorded.setdefault("runs", {})[result["broker"]] = {
        **result,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    recorded["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    RESULTS.write_text(json.dumps(recorded, indent=2) + "\n")
