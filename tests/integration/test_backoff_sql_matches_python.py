"""`tasker.backoff_delay_ms` (SQL, used when a result is applied) equals state/backoff.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasker.state.backoff import BackoffKind, backoff_delay_ms
from tasker.state.migrate import migrate

pytestmark = pytest.mark.postgres

SQL = "SELECT tasker.backoff_delay_ms(%s, %s, %s, %s, %s, %s, %s)"


@pytest.fixture(scope="module")
def connection(make_database: Callable[[], str]) -> Iterator[psycopg.Connection[Any]]:
    url = make_database()
    migrate(url)
    with psycopg.connect(url, autocommit=True) as connection:
        yield connection


def sql_delay(
    connection: psycopg.Connection[Any],
    kind: str,
    base: int,
    cap: int,
    attempt: int,
    jitter: float,
    spread: float,
    requested: int | None,
) -> int:
    row = connection.execute(SQL, (kind, base, cap, attempt, jitter, spread, requested)).fetchone()
    assert row is not None
    return int(row[0])


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(["exponential", "linear", "fibonacci", "none"]),
    base=st.integers(min_value=0, max_value=600_000),
    cap=st.integers(min_value=0, max_value=2**31 - 1),
    attempt=st.integers(min_value=1, max_value=80),
    jitter=st.one_of(st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]), st.floats(1e-6, 1.0)),
    # As random.random() draws them: k / 2**53
    spread=st.integers(0, 2**53 - 1).map(lambda k: k / 2**53),
    requested=st.one_of(st.none(), st.integers(min_value=-(2**31), max_value=2**31 - 1)),
)
def test_sql_backoff_equals_the_python_calculator_exactly(
    connection: psycopg.Connection[Any],
    kind: BackoffKind,
    base: int,
    cap: int,
    attempt: int,
    jitter: float,
    spread: float,
    requested: int | None,
) -> None:
    expected = backoff_delay_ms(
        kind,
        base_ms=base,
        max_ms=cap,
        attempt=attempt,
        jitter=jitter,
        spread=spread,
        requested_ms=requested,
    )

    assert sql_delay(connection, kind, base, cap, attempt, jitter, spread, requested) == expected


@pytest.mark.parametrize(
    ("base", "jitter", "spread"),
    [
        # Values where decimal and binary floating point round differently
        (1000, 0.1, 0.5),
        (3, 0.1, 0.3),
        (1000, 0.3, 0.7),
        (30_000, 0.1, 0.9999999999999999),
        (7, 1.0, 0.5714285714285714),
    ],
)
def test_sql_and_python_truncate_jittered_delays_alike(
    connection: psycopg.Connection[Any], base: int, jitter: float, spread: float
) -> None:
    expected = backoff_delay_ms(
        "linear", base_ms=base, max_ms=10**9, attempt=1, jitter=jitter, spread=spread
    )

    assert sql_delay(connection, "linear", base, 10**9, 1, jitter, spread, None) == expected
