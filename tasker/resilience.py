"""Circuit breakers for the infrastructure a process depends on (database, broker)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pybreaker

from tasker.config import Config


def circuit_breaker(
    name: str, config: Config, counts: Callable[[BaseException], bool]
) -> pybreaker.CircuitBreaker:
    """A breaker that opens after `config.circuit_failure_threshold` consecutive failures
    for which `counts(error)` is true, and tries again after the reset timeout."""
    return pybreaker.CircuitBreaker(
        fail_max=config.circuit_failure_threshold,
        reset_timeout=config.circuit_reset_timeout_seconds,
        # pybreaker excludes an error when a predicate returns True: exclude the rest.
        exclude=[lambda error: not counts(error)],
        name=name,
    )


def breaker_state(breaker: pybreaker.CircuitBreaker) -> str:
    """`closed`, `open` or `half-open`."""
    return str(breaker.current_state)


def hold_while_open(
    breaker: pybreaker.CircuitBreaker,
    trial: Callable[[], object],
    stopping: threading.Event,
    *,
    poll_seconds: float = 0.5,
) -> None:
    """Return once `breaker` is not open (or `stopping` is set), trying `trial` meanwhile.

    `trial` must call through `breaker`: while the reset timeout runs it fails fast without
    touching the service; after it, its success closes the breaker and ends the wait.
    """
    while breaker.current_state == pybreaker.STATE_OPEN and not stopping.is_set():
        try:
            trial()
        except Exception:  # still down: the breaker has re-opened (or never half-opened)
            stopping.wait(poll_seconds)
