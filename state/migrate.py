"""Versioned schema migrations: idempotent, and safe to run from two processes at once.

Migrations are the numbered `.sql` files in `state/migrations/`, applied in order, each in
its own transaction and recorded in `tasker.schema_migrations`. A session-level advisory
lock serialises concurrent runners: the second waits, then finds nothing left to do.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import psycopg

log = logging.getLogger(__name__)

# Arbitrary but fixed: every tasker process contends for the same lock.
_MIGRATION_LOCK_KEY = 0x7A5E_0001


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """Every migration shipped with this package, in version order."""
    folder = files("tasker.state").joinpath("migrations")
    migrations = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            migrations.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(migrations, key=lambda migration: migration.version)


_CREATE_LEDGER = """
CREATE SCHEMA IF NOT EXISTS tasker;
CREATE TABLE IF NOT EXISTS tasker.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def migrate(database_url: str) -> list[Migration]:
    """Apply every pending migration; return the ones this call applied."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,))
        try:
            connection.execute(_CREATE_LEDGER)
            return _apply_pending(connection)
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))


def _apply_pending(connection: psycopg.Connection[Any]) -> list[Migration]:
    applied = {
        row[0]: row[1]
        for row in connection.execute("SELECT version, checksum FROM tasker.schema_migrations")
    }
    done: list[Migration] = []
    for migration in available_migrations():
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                log.warning(
                    "migration %04d_%s changed after it was applied; not re-run",
                    migration.version,
                    migration.name,
                )
            continue
        with connection.transaction():
            connection.execute(migration.sql.encode())
            connection.execute(
                "INSERT INTO tasker.schema_migrations (version, name, checksum) "
                "VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
        log.info("applied migration %04d_%s", migration.version, migration.name)
        done.append(migration)
    return done
