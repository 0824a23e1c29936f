"""The layers depend only downwards, and everything is imported through `tasker`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("actors", "messaging", "state", "handlers")
FORBIDDEN = {
    "messaging": {"tasker.actors", "tasker.handlers"},
    "state": {"tasker.actors", "tasker.handlers"},
    "handlers": {"tasker.actors", "tasker.state"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_does_not_import_the_layers_above_it(layer: str) -> None:
    offending = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _python_files(layer)
        for name in _imports(path)
        for forbidden in FORBIDDEN[layer]
        if name == forbidden or name.startswith(forbidden + ".")
    }
    assert not offending, sorted(offending)


@pytest.mark.parametrize("folder", [*LAYERS, "examples", "tasker", "tests"])
def test_code_imports_layers_through_the_tasker_namespace(folder: str) -> None:
    offending = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _python_files(folder)
        if ".venv" not in path.parts
        for name in _imports(path)
        if name.split(".")[0] in LAYERS
    }
    assert not offending, sorted(offending)


def test_no_psycopg_or_pika_outside_their_backends() -> None:
    allowed_prefixes = ("messaging/pgmq", "messaging/rabbitmq", "state/", "messaging/memory")
    offending = {
        f"{path.relative_to(ROOT)} imports {name}"
        for folder in ("actors", "handlers")
        for path in _python_files(folder)
        for name in _imports(path)
        if name.split(".")[0] in {"psycopg", "pika", "psycopg_pool"}
        and not str(path.relative_to(ROOT)).startswith(allowed_prefixes)
    }
    assert not offending, sorted(offending)
