"""Database access: a connection pool and the unit of work other layers join.

The unit of work implements `messaging.broker.Transaction`, so a transactional broker can
send its messages in the same commit as the state change that causes them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import psycopg
import pybreaker
from psycopg_pool import ConnectionPool, PoolTimeout

log = logging.getLogger(__name__)

# Every statement the engine runs finds rows by key. Prepared statements are planned once
# per connection, and a plan made while a new database's tables (or their statistics) are
# tiny is a sequential scan that stays one as the tables grow: reading one task's steps
# cost 1.4 ms instead of 0.24 at a thousand tasks. So the pool plans as for large tables;
# a query with no usable index still scans (migration 0008 pins the functions the same way).
LOOKUP_PLANS = "-c enable_seqscan=off"


class UnitOfWork:
    """One open transaction on one connection, plus callbacks to run after it commits."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection
        self._after_commit: list[Callable[[], None]] = []

    def execute_sql(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Run one statement in this transaction and return its rows (empty if none)."""
        with self.connection.cursor() as cursor:
            cursor.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Queue `callback` to run once this transaction has committed."""
        self._after_commit.append(callback)

    def run_after_commit(self) -> None:
        for callback in self._after_commit:
            callback()
        self._after_commit.clear()


class Database:
    """A pool of connections to the database that is the source of truth."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 8,
        breaker: pybreaker.CircuitBreaker | None = None,
    ) -> None:
        self.url = url
        self.breaker = breaker
        self._pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=True,
            timeout=5.0,  # a dead database must fail calls quickly, not hang them for 30 s
            # Autocommit: every unit of work opens an explicit BEGIN/COMMIT block.
            kwargs={"autocommit": True, "options": LOOKUP_PLANS},
            name="tasker",
        )

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork]:
        """A unit of work that commits on success and rolls back on any exception.

        After-commit callbacks run outside the transaction, once it is durable.
        """
        with self._guard(), self._pool.connection() as connection:
            unit = UnitOfWork(connection)
            with connection.transaction():
                yield unit
        unit.run_after_commit()

    def statement(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Run one statement in a transaction of its own (one round trip: no BEGIN and
        COMMIT of their own) and return its rows."""
        with self._guard(), self._pool.connection() as connection:
            cursor = connection.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def ping(self) -> None:
        """One trivial round trip through the circuit breaker: raises if the database is down."""
        with self._guard(), self._pool.connection() as connection:
            connection.execute("SELECT 1")

    def _guard(self) -> AbstractContextManager[Any]:
        return self.breaker.calling() if self.breaker is not None else nullcontext()

    def close(self) -> None:
        self._pool.close()


def connect(url: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A single dedicated connection (for LISTEN, migrations and tooling)."""
    return psycopg.connect(url, autocommit=autocommit)


def counts_against_database(error: BaseException) -> bool:
    """Whether `error` says the database is unhealthy (not that a statement was wrong)."""
    return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError | PoolTimeout)
