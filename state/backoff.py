"""Retry backoff: how long a failed step waits before its next attempt.

The same formula runs inside PostgreSQL (`tasker.backoff_delay_ms`, in the migrations) so a
result is applied in one round trip; a test checks that both agree. Randomness comes in as
`spread` in [0, 1), drawn by the caller, which keeps the formula deterministic and testable.
"""

from __future__ import annotations

from typing import Literal

BackoffKind = Literal["exponential", "linear", "fibonacci", "none"]


def _fibonacci(n: int) -> int:
    previous, current = 0, 1
    for _ in range(n - 1):
        previous, current = current, previous + current
    return current


def base_delay_ms(kind: BackoffKind, base_ms: int, attempt: int) -> int:
    """Un-jittered delay after the `attempt`-th failed attempt (attempt >= 1)."""
    if kind == "none":
        return 0
    if kind == "linear":
        return base_ms * attempt
    if kind == "fibonacci":
        return base_ms * _fibonacci(attempt)
    exponent: int = min(attempt - 1, 40)  # bounded: base * 2**40 exceeds any sane cap
    return base_ms * (1 << exponent)


def backoff_delay_ms(
    kind: BackoffKind,
    *,
    base_ms: int,
    max_ms: int,
    attempt: int,
    jitter: float,
    spread: float,
    requested_ms: int | None = None,
) -> int:
    """Delay before the next attempt, in milliseconds.

    A handler's requested delay (Retry-After) wins, up to the cap. Otherwise the policy's
    delay, capped, then reduced by up to `jitter` (a fraction) so retries of many steps
    that failed together spread out, and never exceed the cap.
    """
    if requested_ms is not None:
        return max(0, min(requested_ms, max_ms))
    capped = min(base_delay_ms(kind, base_ms, attempt), max_ms)
    return int(capped - capped * jitter * spread)
