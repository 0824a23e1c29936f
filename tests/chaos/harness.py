"""The chaos harness: run a batch of tasks on a real cluster while a fault happens, then
check that nothing was lost and nothing was recorded twice."""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from tasker.cli.cluster import LocalCluster
from tasker.cli.commands import prepare_database, register_templates
from tasker.config import Config
from tasker.ids import new_id
from tasker.messaging.backends import broker_from_config
from tasker.messaging.messages import (
    ORCHESTRATION_TASK_REQUESTS_QUEUE,
    TaskRequestMessage,
    encode,
)
from tasker.state.templates import load_template_directory

TEMPLATES = Path(__file__).parent / "templates"
HANDLERS = "tests.support.chaos_handlers"
EXPECTED_FACTOR = {"chaos_linear": ("d", 8), "chaos_diamond": ("bottom", 6)}
RESULTS_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "chaos.json"


@dataclass
class ChaosReport:
    scenario: str
    broker: str
    tasks: int
    completed: int = 0
    lost: int = 0
    wrong_results: int = 0
    double_recorded: int = 0
    steps_without_execution: int = 0
    executions: int = 0
    steps: int = 0
    faults: list[float] = field(default_factory=list)
    seconds: float = 0.0
    recover_seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "faults"} | {
            "faults": len(self.faults)
        }


class ChaosRun:
    def __init__(self, config: Config, scenario: str, *, orchestrators: int, workers: int) -> None:
        self.config = config
        self.log_dir = Path(tempfile.mkdtemp(prefix="tasker-chaos-"))
        self.cluster = LocalCluster(
            config,
            namespaces="chaos",
            handler_modules=HANDLERS,
            orchestrators=orchestrators,
            workers=workers,
            log_level="ERROR",
            extra_env={"TASKER_CHAOS_LOG_DIR": str(self.log_dir)},
        )
        self.report = ChaosReport(scenario, config.broker, 0)
        self._seeds: dict[str, tuple[str, int]] = {}

    def prepare(self) -> None:
        prepare_database(self.config)
        register_templates(self.config, load_template_directory(TEMPLATES))

    def submit(self, count: int) -> None:
        broker = broker_from_config(self.config)
        try:
            broker.ensure_queue(ORCHESTRATION_TASK_REQUESTS_QUEUE)
            bodies = []
            for index in range(count):
                name = "chaos_linear" if index % 2 else "chaos_diamond"
                seed = random.randint(1, 1000)
                task_uuid = new_id()
                self._seeds[str(task_uuid)] = (name, seed)
                request = TaskRequestMessage(task_uuid, "chaos", name, "1.0.0", {"seed": seed})
                bodies.append(encode(request))
            for start in range(0, len(bodies), 100):
                broker.send_batch(ORCHESTRATION_TASK_REQUESTS_QUEUE, bodies[start : start + 100])
        finally:
            broker.close()
        self.report.tasks = count

    def fault(self, action: Callable[[], None]) -> None:
        """Run a fault now and remember when, to measure recovery."""
        self.report.faults.append(time.time())
        action()

    def run(self, count: int, chaos: Callable[[ChaosRun, threading.Event], None],
            timeout: float = 150.0) -> ChaosReport:  # fmt: skip
        started = time.monotonic()
        done = threading.Event()
        self.cluster.start()
        try:
            self.submit(count)
            monkey = threading.Thread(target=chaos, args=(self, done), daemon=True)
            monkey.start()
            self._wait_for_all(timeout)
            done.set()
            monkey.join(timeout=30)
            self.report.seconds = round(time.monotonic() - started, 2)
        finally:
            done.set()
            self.cluster.stop(timeout=20)
        self._check()
        _save(self.report)
        return self.report

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.config.database_url, autocommit=True, connect_timeout=3)

    def finished_share(self) -> float:
        """The share of submitted tasks that have finished; 0.0 while the database is away."""
        try:
            with self._connect() as connection:
                row = connection.execute(
                    "SELECT count(*) FILTER (WHERE status IN "
                    "('complete','error','cancelled')) FROM tasker.tasks"
                ).fetchone()
        except psycopg.OperationalError:
            return 0.0  # the database may be restarting: that is the point
        return (row[0] if row else 0) / max(self.report.tasks, 1)

    def _wait_for_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.finished_share() < 1.0:
            time.sleep(0.25)

    def _check(self) -> None:
        with self._connect() as connection:
            self._check_tasks(connection)
            self._check_steps(connection)
        self._check_recovery()

    def _check_tasks(self, connection: psycopg.Connection[Any]) -> None:
        rows = connection.execute(
            "SELECT t.task_uuid::text, t.status, s.name, s.results FROM tasker.tasks t "
            "JOIN tasker.workflow_steps s USING (task_uuid) WHERE s.name IN ('d', 'bottom')"
        ).fetchall()
        completed = [row for row in rows if row[1] == "complete"]
        self.report.completed = len(completed)
        self.report.lost = self.report.tasks - len(completed)
        self.report.wrong_results = sum(
            1 for task, _, step, results in completed if not self._right(task, step, results)
        )

    def _right(self, task_uuid: str, step: str, results: Any) -> bool:
        name, seed = self._seeds[task_uuid]
        expected_step, factor = EXPECTED_FACTOR[name]
        return step == expected_step and results == {"result": factor * seed}

    def _check_steps(self, connection: psycopg.Connection[Any]) -> None:
        self.report.double_recorded = connection.execute(
            "SELECT count(*) FROM (SELECT step_uuid FROM tasker.workflow_step_transitions "
            "WHERE to_state = 'complete' GROUP BY step_uuid HAVING count(*) > 1) twice"
        ).fetchone()[0]  # type: ignore[index]
        complete_steps = {
            str(row[0])
            for row in connection.execute(
                "SELECT step_uuid FROM tasker.workflow_steps WHERE state = 'complete'"
            )
        }
        executions = self._executions()
        self.report.steps = len(complete_steps)
        self.report.executions = sum(executions.values())
        self.report.steps_without_execution = len(complete_steps - set(executions))

    def _executions(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for log in self.log_dir.glob("exec-*.log"):
            counts.update(line.split()[0] for line in log.read_text().splitlines() if line)
        return counts

    def _check_recovery(self) -> None:
        if not self.report.faults:
            return
        with self._connect() as connection:
            finished = sorted(
                row[0].timestamp()
                for row in connection.execute(
                    "SELECT completed_at FROM tasker.tasks WHERE completed_at IS NOT NULL"
                )
            )
        gaps = [
            next((t - fault for t in finished if t > fault), 0.0) for fault in self.report.faults
        ]
        self.report.recover_seconds = round(max(gaps), 2)


def _save(report: ChaosReport) -> None:
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.exists() else {}
    existing[f"{report.scenario}/{report.broker}"] = report.row() | {
        "at": datetime.now(UTC).isoformat(timespec="seconds")
    }
    RESULTS_FILE.write_text(json.dumps(existing, indent=2))


def rabbitmq_close_connections(vhost: str) -> None:
    """Force-close every connection to one virtual host (not the whole shared server)."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "vhost"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    for line in listed.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == vhost:
            subprocess.run(
                ["rabbitmqctl", "-q", "close_connection", parts[0], "chaos test"],
                capture_output=True, timeout=60,
            )  # fmt: skip
