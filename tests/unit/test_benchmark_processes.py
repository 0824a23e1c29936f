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


_HOLDS_A_CHILD = """
import subprocess, sys, time
from benchmarks.processes import unwind_on_sigterm

unwind_on_sigterm()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
try:
    print(child.pid, flush=True)
    time.sleep(60)
finally:
    child.terminate()
    child.wait()
"""


def test_sigterm_unwinds_a_benchmark_so_its_children_are_stopped() -> None:
    root = Path(__file__).resolve().parents[2]
    bench = subprocess.Popen(
        [sys.executable, "-c", _HOLDS_A_CHILD], cwd=root, stdout=subprocess.PIPE, text=True
    )
    assert bench.stdout is not None
    child = int(bench.stdout.readline())
    bench.terminate()

    assert bench.wait(timeout=10) == 128 + 15
    assert not Path(f"/proc/{child}").exists() or _is_zombie(child)


def _is_zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
