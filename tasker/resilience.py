"""Circuit breakers for the infrastructure a process depends on (database, broker)."""

from __future__ import annotations

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
