"""Properties of the retry backoff calculator (`tasker.state.backoff`)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tasker.state.backoff import BackoffKind, backoff_delay_ms, base_delay_ms

KINDS: list[BackoffKind] = ["exponential", "linear", "fibonacci", "none"]
kinds = st.sampled_from(KINDS)
growing_kinds = st.sampled_from(["exponential", "linear", "fibonacci"])
base_ms = st.integers(min_value=0, max_value=600_000)
max_ms = st.integers(min_value=0, max_value=2**31 - 1)
attempts = st.integers(min_value=1, max_value=60)
jitters = st.floats(min_value=0.0, max_value=1.0)
spreads = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


def delay(
    kind: BackoffKind,
    base: int,
    cap: int,
    attempt: int,
    jitter: float = 0.0,
    spread: float = 0.0,
    requested: int | None = None,
) -> int:
    return backoff_delay_ms(
        kind,
        base_ms=base,
        max_ms=cap,
        attempt=attempt,
        jitter=jitter,
        spread=spread,
        requested_ms=requested,
    )


@settings(max_examples=300)
@given(kinds, base_ms, max_ms, attempts)
def test_without_jitter_the_delay_never_shrinks_as_attempts_grow(
    kind: BackoffKind, base: int, cap: int, attempt: int
) -> None:
    assert delay(kind, base, cap, attempt) <= delay(kind, base, cap, attempt + 1)


@settings(max_examples=300)
@given(growing_kinds, st.integers(min_value=1, max_value=600_000), max_ms, attempts)
def test_growing_policies_reach_the_cap_and_stay_there(
    kind: BackoffKind, base: int, cap: int, attempt: int
) -> None:
    # Given a delay that has reached the cap, every later attempt waits exactly the cap
    if delay(kind, base, cap, attempt) == cap:
        assert delay(kind, base, cap, attempt + 1) == cap
    # and far enough out every growing policy reaches it (2**59 and fib(60) exceed any
    # 32-bit cap; linear needs base * attempt >= cap)
    far = cap // base + 1 if kind == "linear" else 60
    assert delay(kind, base, cap, far) == cap


@settings(max_examples=300)
@given(kinds, base_ms, max_ms, attempts, jitters, spreads)
def test_the_cap_is_never_exceeded(
    kind: BackoffKind, base: int, cap: int, attempt: int, jitter: float, spread: float
) -> None:
    assert 0 <= delay(kind, base, cap, attempt, jitter, spread) <= cap


@settings(max_examples=500)
@given(kinds, base_ms, max_ms, attempts, jitters, spreads)
def test_jitter_only_shortens_the_delay_and_by_at_most_its_fraction(
    kind: BackoffKind, base: int, cap: int, attempt: int, jitter: float, spread: float
) -> None:
    plain = delay(kind, base, cap, attempt)

    jittered = delay(kind, base, cap, attempt, jitter, spread)

    assert math.floor(plain * (1 - jitter)) <= jittered <= plain


@given(kinds, base_ms, max_ms, attempts, jitters)
def test_no_spread_means_no_jitter(
    kind: BackoffKind, base: int, cap: int, attempt: int, jitter: float
) -> None:
    assert delay(kind, base, cap, attempt, jitter, 0.0) == delay(kind, base, cap, attempt)


@settings(max_examples=300)
@given(kinds, base_ms, max_ms, attempts, jitters, spreads, st.integers(-(2**40), 2**40))
def test_a_requested_delay_wins_up_to_the_cap_without_jitter(
    kind: BackoffKind,
    base: int,
    cap: int,
    attempt: int,
    jitter: float,
    spread: float,
    requested: int,
) -> None:
    assert delay(kind, base, cap, attempt, jitter, spread, requested) == max(0, min(requested, cap))


@given(base_ms, max_ms, attempts, jitters, spreads)
def test_none_means_retry_at_once(
    base: int, cap: int, attempt: int, jitter: float, spread: float
) -> None:
    assert delay("none", base, cap, attempt, jitter, spread) == 0


def test_each_policy_grows_as_named() -> None:
    # Given a 100 ms base, attempts 1..6 wait (before the cap and jitter):
    assert [base_delay_ms("exponential", 100, a) for a in range(1, 7)] == [
        100,
        200,
        400,
        800,
        1600,
        3200,
    ]
    assert [base_delay_ms("linear", 100, a) for a in range(1, 7)] == [100, 200, 300, 400, 500, 600]
    assert [base_delay_ms("fibonacci", 100, a) for a in range(1, 7)] == [
        100,
        100,
        200,
        300,
        500,
        800,
    ]
    assert [base_delay_ms("none", 100, a) for a in range(1, 7)] == [0] * 6


def test_exponential_growth_is_bounded_for_absurd_attempt_numbers() -> None:
    assert delay("exponential", 1000, 30_000, 10_000) == 30_000
