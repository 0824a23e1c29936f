"""Find the code a template's `handler` block names.

A `callable` is looked up, in order, as a registered `handler_name`, then as an import path:
`package.module.ClassName` or `package.module:function`. `handler.method` picks a method
other than `call`. Handler modules given to the worker (`--handlers`) are imported once at
start, and every StepHandler subclass or `@step_handler` function in them is registered.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from tasker.handlers.base import StepHandler
from tasker.handlers.context import StepContext
from tasker.handlers.functional import HANDLER_CLASS_ATTR, call_function

log = logging.getLogger(__name__)


class HandlerNotFoundError(LookupError):
    """No handler matches a callable; the message names it and the modules searched."""


class HandlerLoadError(ImportError):
    """A handler module could not be imported, or two handlers claim one name."""


@dataclass(frozen=True)
class ResolvedHandler:
    """A handler ready to run: a fresh instance per call (handlers need not be thread-safe)."""

    callable: str
    factory: Callable[[], Any]
    method: str

    def invoke(self, context: StepContext) -> Any:
        """Run the handler's method on `context`; returns what it returns (maybe awaitable)."""
        return getattr(self.factory(), self.method)(context)


class HandlerRegistry:
    """Handlers by key, plus the modules they were loaded from (for error messages)."""

    def __init__(self) -> None:
        self._classes: dict[str, type] = {}
        self._modules: list[str] = []
        self._resolved: dict[tuple[str, str], ResolvedHandler] = {}
        self._lock = threading.Lock()

    @property
    def modules(self) -> list[str]:
        """Modules loaded with `load_modules`, in order."""
        return list(self._modules)

    def keys(self) -> list[str]:
        """Registered handler names, sorted."""
        return sorted(self._classes)

    def __contains__(self, key: object) -> bool:
        return key in self._classes

    def register(self, handler: type | Callable[..., Any], name: str | None = None) -> str:
        """Register a handler class or `@step_handler` function; returns its key."""
        cls = handler_class_of(handler)
        if cls is None:
            raise TypeError(f"{handler!r} is neither a handler class nor a @step_handler function")
        key = name or getattr(cls, "handler_name", "") or cls.__name__
        with self._lock:
            existing = self._classes.get(key)
            if existing is not None and existing is not cls:
                raise HandlerLoadError(
                    f"handler name {key!r} is claimed by both {_where(existing)} and "
                    f"{_where(cls)}; give one of them another handler_name"
                )
            self._classes[key] = cls
            self._resolved.clear()
        return key

    def load_modules(self, module_names: Iterable[str]) -> list[str]:
        """Import each module and register the handlers defined in it; returns the new keys."""
        keys: list[str] = []
        for module_name in module_names:
            module = _import_handler_module(module_name)
            if module_name not in self._modules:
                self._modules.append(module_name)
            keys.extend(self.register(cls) for cls in handlers_in(module))
        return keys

    def resolve(self, callable_name: str, method: str = "call") -> ResolvedHandler:
        """The handler for a template's `callable` and `method`, or HandlerNotFoundError."""
        cache_key = (callable_name, method)
        resolved = self._resolved.get(cache_key)
        if resolved is None:
            resolved = self._resolve_uncached(callable_name, method)
            self._resolved[cache_key] = resolved
        return resolved

    def _resolve_uncached(self, callable_name: str, method: str) -> ResolvedHandler:
        target = self._classes.get(callable_name) or _import_target(callable_name)
        if target is None:
            raise HandlerNotFoundError(self._not_found_message(callable_name))
        factory = _factory_for(target, callable_name)
        if not callable(getattr(factory, method, None)):
            raise HandlerNotFoundError(
                f"handler {callable_name!r} ({_where(target)}) has no method {method!r}; "
                "fix the template's handler.method"
            )
        return ResolvedHandler(callable_name, factory, method)

    def _not_found_message(self, callable_name: str) -> str:
        modules = ", ".join(self._modules) or "none (the worker was given no --handlers)"
        return (
            f"no handler for callable {callable_name!r}: it is not a registered handler_name "
            f"and not an importable 'package.module.Class' or 'package.module:function' path. "
            f"Handler modules searched: {modules}. Registered names: "
            f"{', '.join(self.keys()) or 'none'}. Add the module that defines it to the "
            "worker's handlers."
        )


def load_handler_modules(
    module_names: Iterable[str], registry: HandlerRegistry | None = None
) -> HandlerRegistry:
    """Import `module_names` and register their handlers (into a new registry by default)."""
    registry = registry or HandlerRegistry()
    registry.load_modules(module_names)
    return registry


def handler_class_of(obj: Any) -> type | None:
    """The handler class behind `obj`: itself if a class, else a decorated function's class."""
    if inspect.isclass(obj):
        return obj
    handler_class = getattr(obj, HANDLER_CLASS_ATTR, None)
    return handler_class if inspect.isclass(handler_class) else None


def handlers_in(module: ModuleType) -> list[type]:
    """StepHandler subclasses naming themselves (own `handler_name`) and decorated functions."""
    found: list[type] = []
    for value in list(vars(module).values()):
        if inspect.isclass(value) and issubclass(value, StepHandler):
            # Inherited names are skipped: a base class and its subclass must not collide.
            if value.__dict__.get("handler_name"):
                found.append(value)
        elif (cls := handler_class_of(value)) is not None and not inspect.isclass(value):
            found.append(cls)
    return found


def _import_handler_module(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise HandlerLoadError(
            f"cannot import handler module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc


def _import_target(path: str) -> Any:
    """`pkg.mod:attr.sub` or `pkg.mod.Attr`; None when no such module or attribute exists."""
    module_name, sep, attr_path = path.partition(":")
    if not sep:
        module_name, _, attr_path = path.rpartition(".")
    if not module_name or not attr_path:
        return None
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name + ".").startswith(exc.name + "."):
            return None  # the path names no module: an unknown callable
        raise HandlerLoadError(f"importing {module_name!r} for handler {path!r}: {exc}") from exc
    except Exception as exc:
        raise HandlerLoadError(
            f"importing {module_name!r} for handler {path!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for attr in attr_path.split("."):
        target = getattr(target, attr, None)
        if target is None:
            return None
    return target


def _factory_for(target: Any, callable_name: str) -> type:
    """A class to instantiate per call (its methods are checked before any instance exists)."""
    cls = handler_class_of(target)
    if cls is not None:
        return cls
    if callable(target):
        return type(_PlainFunctionHandler.__name__, (_PlainFunctionHandler,), {"fn": target})
    raise HandlerNotFoundError(
        f"callable {callable_name!r} names {type(target).__name__} {target!r}, which is not "
        "a handler class or function"
    )


class _PlainFunctionHandler:
    """Adapts an undecorated `module:function` so it runs like a handler's `call`."""

    fn: Callable[..., Any]

    def call(self, context: StepContext) -> Any:
        return call_function(type(self).fn, context)


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
