"""ruff and mypy --strict (over tasker, the tests and the benchmarks) stay clean: the suite
fails the moment they do not."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    tool = BIN / command[0]
    executable = str(tool) if tool.exists() else shutil.which(command[0])
    if executable is None:
        pytest.fail(f"{command[0]} is not installed; install the project with '.[dev]'")
    return subprocess.run(
        [executable, *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_lint_is_clean() -> None:
    finished = _run("ruff", "check", ".")
    assert finished.returncode == 0, finished.stdout + finished.stderr


def test_ruff_format_is_clean() -> None:
    finished = _run("ruff", "format", "--check", ".")
    assert finished.returncode == 0, finished.stdout + finished.stderr


@pytest.mark.slow
def test_mypy_strict_is_clean() -> None:
    finished = _run("mypy")
    assert finished.returncode == 0, finished.stdout + finished.stderr


@pytest.mark.slow
def test_mypy_strict_is_clean_over_the_tests_and_benchmarks() -> None:
    # [tool.mypy] packages covers tasker only; naming the folders checks them under the
    # same settings (a few seconds more once the run above has cached tasker).
    finished = _run("mypy", "tests", "benchmarks")
    assert finished.returncode == 0, finished.stdout + finished.stderr
