"""Put PGMQ into a database: the extension where the server has it, else its bundled SQL.

Safe to run from many processes at once: an advisory lock serialises the installers, and
each re-checks under the lock, so exactly one of them installs.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from pgmq.install import PGMQInstallError, install_pgmq_from_sql

from tasker.messaging.broker import BrokerError

log = logging.getLogger(__name__)

# Any fixed key works; it only has to be the same in every installer.
_INSTALL_LOCK = "SELECT pg_advisory_xact_lock(hashtext('tasker.install_pgmq'))"
# Read pg_class rather than calling to_regclass(): a name lookup can answer from a cache that
# still says "missing" after another installer committed, while this scan sees the commit.
_INSTALLED = """
SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = 'pgmq' AND c.relname = 'meta'
)
"""
_EXTENSION_AVAILABLE = "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgmq')"


def install_pgmq(target: str | psycopg.Connection[Any]) -> None:
    """Install PGMQ into the database at `target` (a URL or an open connection) if missing.

    Prefers `CREATE EXTENSION pgmq`; falls back to the SQL that ships with the `pgmq`
    package when the server lacks the extension or we may not create it.
    """
    try:
        if isinstance(target, str):
            with psycopg.connect(target, autocommit=True) as connection:
                _install(connection)
        else:
            _install(target)
    except psycopg.OperationalError as exc:
        raise BrokerError(f"could not install PGMQ, database unreachable: {exc}") from exc
    except (psycopg.Error, PGMQInstallError) as exc:
        raise BrokerError(
            f"could not install PGMQ: {exc}. Install it by hand (CREATE EXTENSION pgmq) "
            "or grant this role the rights to create a schema.",
            recoverable=False,
        ) from exc


def _install(connection: psycopg.Connection[Any]) -> None:
    if _fetch_flag(connection, _INSTALLED):  # the common case needs no lock
        return
    with connection.transaction():
        connection.execute(_INSTALL_LOCK)
        if _fetch_flag(connection, _INSTALLED):  # another process won the race
            return
        if _fetch_flag(connection, _EXTENSION_AVAILABLE) and _create_extension(connection):
            log.info("installed PGMQ as a PostgreSQL extension")
            return
        version = install_pgmq_from_sql(conn=connection)
        log.info("installed PGMQ %s from the SQL bundled with the pgmq package", version)


def _create_extension(connection: psycopg.Connection[Any]) -> bool:
    """Try CREATE EXTENSION in a savepoint; False when this role may not create it."""
    try:
        with connection.transaction():
            connection.execute("CREATE EXTENSION IF NOT EXISTS pgmq")
    except psycopg.errors.InsufficientPrivilege as exc:
        log.warning("PGMQ extension is available but not creatable (%s); using bundled SQL", exc)
        return False
    return True


def _fetch_flag(connection: psycopg.Connection[Any], query: str) -> bool:
    row = connection.execute(query).fetchone()
    return bool(row and row[0])
