"""Every `tasker` command and every TASKER_* variable in deploy/ is real.

Commands come from the Dockerfile (ENTRYPOINT + CMD), the compose services, the Kubernetes
containers and the systemd units' ExecStart; each must parse with the CLI's own parser
(`tasker.cli.main.build_parser`). Variables come from the same places plus the env example
files; each must name a Config field, and each group of settings must load as a Config.
The multi-host test runs the systemd units' commands with the env example files' settings.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import msgspec
import pytest

from tasker.cli.main import build_parser
from tasker.config import ENV_PREFIX, Config, load_config
from tests.deploy.deployfiles import (
    COMPOSE_ENV_FILE,
    ENV_FILES,
    OVERLAYS,
    compose_model,
    containers,
    dockerfile_instructions,
    exec_start,
    parse_env_file,
    render_overlay,
    systemd_units,
    unit_values,
)

SETTINGS = {ENV_PREFIX + field.name.upper() for field in msgspec.structs.fields(Config)}
VALID_VARIABLES = SETTINGS | {ENV_PREFIX + "CONFIG"}  # TASKER_CONFIG: the TOML file
INSTALLED_TASKER = "/opt/tasker/venv/bin/tasker"  # where the systemd units expect it
TASKER_COMPOSE_SERVICES = ("migrate", "orchestrator", "worker")


def _dockerfile() -> tuple[list[str], list[str], dict[str, str]]:
    entrypoint: list[str] = []
    cmd: list[str] = []
    env: dict[str, str] = {}
    for name, args in dockerfile_instructions():
        if name == "ENTRYPOINT":
            entrypoint = json.loads(args)
        elif name == "CMD":
            cmd = json.loads(args)
        elif name == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return entrypoint, cmd, env


def deploy_commands() -> dict[str, list[str]]:
    """where -> the argv given to `tasker` there."""
    entrypoint, cmd, _ = _dockerfile()
    assert entrypoint == ["tasker"]
    found = {"Dockerfile CMD": cmd}
    services = compose_model()["services"]
    for name in TASKER_COMPOSE_SERVICES:
        service = services[name]
        assert service.get("entrypoint") is None, "compose services use the image's entrypoint"
        found[f"compose {name}"] = service["command"]
    for overlay in OVERLAYS:
        for manifest in render_overlay(overlay):
            for container in containers(manifest):
                assert "command" not in container, "containers use the image's entrypoint"
                where = f"kubernetes/{overlay} {manifest['kind']} {container['name']}"
                found[where] = container["args"]
    for unit in systemd_units():
        argv = exec_start(unit)
        assert argv[0] == INSTALLED_TASKER, f"{unit.name}: {argv[0]}"
        found[f"systemd {unit.name}"] = argv[1:]
    return found


def deploy_settings() -> dict[str, dict[str, str]]:
    """where -> the TASKER_* (and other) variables set there."""
    _, _, image_env = _dockerfile()
    found = {"Dockerfile ENV": image_env}
    services = compose_model()["services"]
    for name in TASKER_COMPOSE_SERVICES:
        found[f"compose {name}"] = {**image_env, **services[name]["environment"]}
    for overlay in OVERLAYS:
        manifests = render_overlay(overlay)
        shared: dict[str, str] = {}
        for manifest in manifests:
            if manifest["kind"] == "ConfigMap":
                shared.update(manifest["data"])
            elif manifest["kind"] == "Secret":
                shared.update(manifest.get("stringData", {}))
        for manifest in manifests:
            for container in containers(manifest):
                own = {item["name"]: item["value"] for item in container.get("env", [])}
                where = f"kubernetes/{overlay} {manifest['kind']} {container['name']}"
                found[where] = {**image_env, **shared, **own}
    for unit in systemd_units():
        inline = dict(
            item.split("=", 1)
            for value in unit_values(unit, "Service", "Environment")
            for item in shlex.split(value)
        )
        found[f"systemd {unit.name}"] = inline
    base = parse_env_file(ENV_FILES[0])
    found["env/tasker.env.example"] = base
    found["env/tasker.env + worker.env"] = {**base, **parse_env_file(ENV_FILES[1])}
    found[".env.example (compose)"] = parse_env_file(COMPOSE_ENV_FILE)
    return found


def test_deploy_files_run_orchestrators_workers_and_migrations() -> None:
    commands = deploy_commands()
    used = {argv[0] for argv in commands.values()}

    assert {"orchestrator", "worker", "db"} <= used
    assert len([w for w in commands if w.startswith("systemd")]) == 3


@pytest.mark.parametrize("where", sorted(deploy_commands()))
def test_each_tasker_command_exists_in_the_cli(where: str) -> None:
    argv = deploy_commands()[where]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}: `tasker {shlex.join(argv)}` does not parse (exit {exc.code})")

    assert args.command in {"orchestrator", "worker", "db"}
    assert callable(args.run)


@pytest.mark.parametrize("where", sorted(deploy_settings()))
def test_each_tasker_variable_is_a_setting_and_the_values_load(where: str) -> None:
    variables = deploy_settings()[where]
    tasker_variables = {key for key in variables if key.startswith(ENV_PREFIX)}

    assert tasker_variables <= VALID_VARIABLES, sorted(tasker_variables - VALID_VARIABLES)
    config = load_config(environ={key: variables[key] for key in tasker_variables})
    assert isinstance(config, Config)


def test_only_the_compose_file_reads_the_non_tasker_variables() -> None:
    compose_only = {
        key for key in parse_env_file(COMPOSE_ENV_FILE) if not key.startswith(ENV_PREFIX)
    }
    text = (COMPOSE_ENV_FILE.parent / "compose.yaml").read_text()

    for variable in compose_only:
        assert "${" + variable in text, f"{variable} is in .env.example but compose ignores it"


def test_worker_units_stop_after_the_drain_period() -> None:
    (worker_unit,) = [unit for unit in systemd_units() if unit.name.startswith("tasker-worker@")]
    grace = float(parse_env_file(ENV_FILES[1])["TASKER_SHUTDOWN_GRACE_SECONDS"])
    (timeout,) = unit_values(worker_unit, "Service", "TimeoutStopSec")

    assert grace < float(timeout) <= grace + 15


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    system_units = Path("/usr/lib/systemd/system")
    # An image root holding systemd's own units, the installed `tasker` and ours.
    shutil.copytree(system_units, tmp_path / "usr/lib/systemd/system", symlinks=True)
    installed = tmp_path / INSTALLED_TASKER.lstrip("/")
    installed.parent.mkdir(parents=True)
    installed.write_text("#!/bin/sh\n")
    installed.chmod(0o755)
    target = tmp_path / "etc/systemd/system"
    target.mkdir(parents=True)
    names = []
    for unit in systemd_units():
        shutil.copy(unit, target / unit.name)
        names.append(unit.name.replace("@.", "@1."))

    finished = subprocess.run(
        [analyze, "verify", f"--root={tmp_path}", "--man=no", *names],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Warnings (an unknown key, a bad value) count: they mean systemd ignores a line.
    assert finished.returncode == 0 and not finished.stderr.strip(), finished.stderr
