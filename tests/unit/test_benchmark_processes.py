"""The benchmarks' CPU accounting: work is charged to the process that did it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.processes import CpuMeter, cpu_seconds, pids_named, rss_mb


def _burn(seconds: float) -> None:
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        pass


def test_cpu_spent_is_charged_to_the_busy_process_not_the_idle_one() -> None:
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)  # let its start-up's CPU fall before the meter starts
        with CpuMeter({"busy": lambda: [os.getpid()], "idle": lambda: [idle.pid]}) as meter:
            _burn(0.3)

        assert meter.spent["busy"] >= 0.2
        assert meter.spent["idle"] < 0.05
        per_task = meter.ms_per(10)
        assert per_task["busy"] == round(1000 * meter.spent["busy"] / 10, 2)
    finally:
        idle.kill()
        idle.wait()


def test_a_process_started_inside_the_window_counts_from_zero() -> None:
    started: list[int] = []
    with CpuMeter({"children": lambda: started}) as meter:
        child = subprocess.Popen([sys.executable, "-c", "sum(range(300_000_000))"])
        started.append(child.pid)
        time.sleep(0.05)
        while child.poll() is None and cpu_seconds(child.pid) < 0.1:
            time.sleep(0.01)
    child.kill()
    child.wait()

    assert meter.spent["children"] >= 0.1


def test_processes_are_found_by_command_name_and_a_gone_one_reads_zero() -> None:
    own_name = Path("/proc/self/comm").read_text().strip()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()

    assert os.getpid() in pids_named(own_name)
    assert cpu_seconds(gone.pid) == 0.0
    assert rss_mb(os.getpid()) > 1
