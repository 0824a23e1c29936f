"""`tasker demo` runs as a user runs it: embedded PostgreSQL, real processes, exit 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_the_examples_on_an_embedded_database_and_exits_zero() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}

    finished = subprocess.run(
        [sys.executable, "-m", "tasker", "demo"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "embedded PostgreSQL" in finished.stdout
    assert "linear_step_4            complete" in finished.stdout
    assert "2821109907456" in finished.stdout
    assert "diamond_end              complete" in finished.stdout
    assert "60466176" in finished.stdout
    assert "exit codes [0, 0]" in finished.stdout
