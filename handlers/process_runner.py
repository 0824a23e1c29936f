"""Run handlers in child processes (`process_pool=True`): for CPU-bound handlers, which
threads would serialize on the GIL.

Children are spawned, not forked: forking a process that already runs broker and timer
threads can copy a held lock into the child. Each child imports the worker's handler
modules once at start; only those (and import paths) resolve there, not handlers registered
programmatically in the parent.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from tasker.handlers.compat import apply_compat
from tasker.handlers.execution import execute_step
from tasker.handlers.outcome import result_from_exception
from tasker.handlers.registry import HandlerRegistry
from tasker.handlers.result import StepHandlerResult
from tasker.messaging.messages import StepMessage, decode, encode

# Set once per child process by `_init_child`; the parent never reads it.
_child_registry: HandlerRegistry | None = None


class ProcessRunner:
    """Calls `execute_step` in a pool of `size` spawned processes."""

    def __init__(self, size: int, handler_modules: Sequence[str], compat: Sequence[str]) -> None:
        self._executor = ProcessPoolExecutor(
            max_workers=size,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_child,
            initargs=(tuple(handler_modules), tuple(compat)),
        )

    def __call__(self, message: StepMessage) -> StepHandlerResult:
        """Run the step in a child and wait for its result."""
        try:
            return self._executor.submit(_run_in_child, encode(message)).result()
        except Exception as exc:  # a child died, or the result could not be pickled
            return result_from_exception(exc)

    def shutdown(self) -> None:
        """Stop the children without waiting for handlers stuck past their timeout."""
        # No public API ends a busy child before Python 3.14 (terminate_workers), hence the
        # private attribute; without it a stuck handler would keep its child alive.
        processes = list(getattr(self._executor, "_processes", {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()


def _init_child(handler_modules: tuple[str, ...], compat: tuple[str, ...]) -> None:
    global _child_registry
    apply_compat(compat)
    _child_registry = HandlerRegistry()
    _child_registry.load_modules(handler_modules)


def _run_in_child(body: bytes) -> StepHandlerResult:
    message = decode(body)
    assert isinstance(message, StepMessage), "the parent only sends step messages"
    assert _child_registry is not None, "the pool initializer loads the registry"
    return execute_step(_child_registry, message)
