"""Memory and CPU time of local processes, from /proc.

On a busy machine latency includes waiting for a core and CPU time does not, so CPU time
per unit of work says which process the work goes to.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def unwind_on_sigterm() -> None:
    """Make SIGTERM unwind the main thread like Ctrl-C does, so `with` blocks still stop
    the cluster's processes and drop the scratch databases. By default SIGTERM ends the
    interpreter on the spot and leaves them behind, holding ports and databases."""

    def exit_now(signum: int, _frame: object) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, exit_now)


def rss_mb(pid: int) -> float:
    """Resident set size of a process (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far; 0 once gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def pids_named(command: str) -> list[int]:
    """Processes whose command name is `command` (every PostgreSQL backend, say)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == command:
                pids.append(int(entry.name))
        except OSError:  # exited while we looked
            continue
    return pids


class CpuMeter:
    """CPU seconds each group of processes spends inside the `with` block. A group is a
    function giving its pids, asked again at the end so that processes started in
    between (a new database backend) count from zero; one that exited in between is
    lost, which pooled connections make rare."""

    def __init__(self, groups: Mapping[str, Callable[[], Iterable[int]]]) -> None:
        self.groups = groups
        self.spent: dict[str, float] = {}
        self._before: dict[str, dict[int, float]] = {}

    def __enter__(self) -> CpuMeter:
        self._before = {name: _snapshot(pids()) for name, pids in self.groups.items()}
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for name, pids in self.groups.items():
            before = self._before[name]
            after = _snapshot(pids())
            self.spent[name] = sum(used - before.get(pid, 0.0) for pid, used in after.items())

    def ms_per(self, units: int) -> dict[str, float]:
        """Milliseconds of CPU per unit of work (per task, say), by group."""
        return {name: round(1000 * spent / max(units, 1), 2) for name, spent in self.spent.items()}


def _snapshot(pids: Iterable[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in pids}
