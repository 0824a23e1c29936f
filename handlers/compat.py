"""Opt-in compatibility layer: make `import tasker_core...` load our API.

Handlers written for Tasker's Python worker import `tasker_core`, `tasker_core.types`,
`tasker_core.errors`, `tasker_core.step_handler` and `tasker_core.step_handler.functional`.
`enable_tasker_core_compat()` (the worker's `compat = ["tasker-core"]` option) makes those
imports load thin re-export modules from `tasker/handlers/compat_tasker_core/`, so such
handlers run unchanged.

It never shadows a real installation: it refuses to start when a real `tasker_core` is
importable, and its finder sits last on `sys.meta_path`, so even a `tasker_core` installed
later would win.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType

from tasker.config import ConfigError

TASKER_CORE = "tasker_core"
SHIM_DIR = Path(__file__).resolve().parent / "compat_tasker_core"
KNOWN_COMPAT = ("tasker-core",)


class CompatError(RuntimeError):
    """The compatibility layer cannot be enabled; the message says why and what to do."""


class _TaskerCoreFinder(importlib.abc.MetaPathFinder):
    """Finds the top-level `tasker_core` package in the shim directory.

    Submodules then resolve through the package's `__path__` (the shim directory) with the
    normal path finder, so `tasker_core.x` loads `compat_tasker_core/x.py` under its
    Tasker name. The shims import our API by absolute path, so classes are shared, not
    copied: `tasker_core.StepHandler is tasker.handlers.StepHandler`.
    """

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != TASKER_CORE:
            return None
        return importlib.util.spec_from_file_location(
            TASKER_CORE,
            SHIM_DIR / "__init__.py",
            submodule_search_locations=[str(SHIM_DIR)],
        )


def enable_tasker_core_compat() -> None:
    """Make `tasker_core` importable as our API. Idempotent.

    Raises CompatError if a real `tasker_core` is installed: use it, or uninstall it.
    """
    if is_tasker_core_compat_enabled():
        return
    existing = _real_tasker_core_origin()
    if existing is not None:
        raise CompatError(
            f"a real tasker_core is installed ({existing}); the tasker-core compatibility "
            "layer will not shadow it. Uninstall it (pip uninstall tasker-py) or run the "
            "worker without --compat tasker-core."
        )
    sys.meta_path.append(_TaskerCoreFinder())


def disable_tasker_core_compat() -> None:
    """Undo `enable_tasker_core_compat` and forget the `tasker_core` modules it loaded."""
    if not is_tasker_core_compat_enabled():
        return  # never unload a real tasker_core
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TaskerCoreFinder)]
    for name in [n for n in sys.modules if n == TASKER_CORE or n.startswith(TASKER_CORE + ".")]:
        del sys.modules[name]


def is_tasker_core_compat_enabled() -> bool:
    """Whether our finder is installed."""
    return any(isinstance(finder, _TaskerCoreFinder) for finder in sys.meta_path)


def apply_compat(options: Iterable[str]) -> None:
    """Enable the compatibility layers the `compat` setting names."""
    options = tuple(options)
    for option in options:
        if option not in KNOWN_COMPAT:
            raise ConfigError("compat", f"unknown value {option!r}; known: {KNOWN_COMPAT}")
    if "tasker-core" in options:
        enable_tasker_core_compat()


def _real_tasker_core_origin() -> str | None:
    """Where an importable `tasker_core` other than ours lives, if any."""
    module = sys.modules.get(TASKER_CORE)
    if module is not None:
        return str(getattr(module, "__file__", None) or module)
    try:
        spec = importlib.util.find_spec(TASKER_CORE)
    except (ImportError, ValueError):
        return None
    return None if spec is None else str(spec.origin or spec.submodule_search_locations)
