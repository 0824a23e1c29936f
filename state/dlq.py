"""The dead letter queue: investigation records for tasks that cannot proceed.

Entries are opened by the engine (a task failed: retries exhausted, a permanent failure, an
unknown handler; or a task went stale) with a snapshot of the task and its steps. Operators
list them, read them and close them with a status, who, when and notes.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from tasker.state.db import Database
from tasker.state.errors import StateError

DlqStatus = Literal["pending", "manually_resolved", "permanently_failed", "cancelled"]
DLQ_STATUSES: tuple[str, ...] = ("pending", "manually_resolved", "permanently_failed", "cancelled")


class DlqEntry(msgspec.Struct, frozen=True):
    entry_uuid: UUID
    task_uuid: UUID
    reason: str
    status: str
    details: dict[str, Any]
    snapshot: dict[str, Any]
    resolved_by: str | None
    resolved_at: datetime | None
    resolution_notes: str | None
    created_at: datetime
    updated_at: datetime


class DlqStats(msgspec.Struct, frozen=True):
    total: int
    by_status: dict[str, int]
    by_reason: dict[str, int]


class DlqEntryNotFoundError(StateError):
    def __init__(self, entry_uuid: UUID) -> None:
        super().__init__(f"dead letter entry {entry_uuid} does not exist")
        self.entry_uuid = entry_uuid


_COLUMNS = """entry_uuid, task_uuid, reason, status, details, snapshot, resolved_by,
       resolved_at, resolution_notes, created_at, updated_at"""
_LIST = f"""
SELECT {_COLUMNS}, count(*) OVER () FROM tasker.dlq_entries
 WHERE (%(status)s::text IS NULL OR status = %(status)s)
   AND (%(reason)s::text IS NULL OR reason = %(reason)s)
 ORDER BY created_at DESC LIMIT %(limit)s OFFSET %(offset)s
"""
_FOR_TASK = f"SELECT {_COLUMNS} FROM tasker.dlq_entries WHERE task_uuid = %s ORDER BY created_at"
_GET = f"SELECT {_COLUMNS} FROM tasker.dlq_entries WHERE entry_uuid = %s"
_UPDATE = f"""
UPDATE tasker.dlq_entries SET status = %s, resolved_by = %s, resolution_notes = %s,
       resolved_at = CASE WHEN %s = 'pending' THEN NULL ELSE now() END, updated_at = now()
 WHERE entry_uuid = %s
RETURNING {_COLUMNS}
"""
_STATS = "SELECT status, reason, count(*) FROM tasker.dlq_entries GROUP BY status, reason"


class DeadLetterRepository:
    def __init__(self, database: Database) -> None:
        self.database = database

    def list(
        self,
        *,
        status: str | None = None,
        reason: str | None = None,
        page: int = 1,
        per_page: int = 25,
    ) -> tuple[builtins.list[DlqEntry], int]:
        """A page of entries, newest first, and the total matching."""
        params = {"status": status, "reason": reason, "limit": per_page,
                  "offset": (page - 1) * per_page}  # fmt: skip
        with self.database.transaction() as unit:
            rows = unit.execute_sql(_LIST, params)
        total = rows[0][-1] if rows else 0
        return [DlqEntry(*row[:-1]) for row in rows], int(total)

    def for_task(self, task_uuid: UUID) -> builtins.list[DlqEntry]:
        with self.database.transaction() as unit:
            return [DlqEntry(*row) for row in unit.execute_sql(_FOR_TASK, (task_uuid,))]

    def get(self, entry_uuid: UUID) -> DlqEntry:
        with self.database.transaction() as unit:
            rows = unit.execute_sql(_GET, (entry_uuid,))
        if not rows:
            raise DlqEntryNotFoundError(entry_uuid)
        return DlqEntry(*rows[0])

    def update(
        self, entry_uuid: UUID, *, status: DlqStatus, resolved_by: str, notes: str | None = None
    ) -> DlqEntry:
        """Record an operator's conclusion on an entry."""
        if status not in DLQ_STATUSES:
            raise ValueError(f"status must be one of {', '.join(DLQ_STATUSES)}, got {status!r}")
        params = (status, resolved_by, notes, status, entry_uuid)
        with self.database.transaction() as unit:
            rows = unit.execute_sql(_UPDATE, params)
        if not rows:
            raise DlqEntryNotFoundError(entry_uuid)
        return DlqEntry(*rows[0])

    def stats(self) -> DlqStats:
        with self.database.transaction() as unit:
            rows = unit.execute_sql(_STATS)
        by_status: dict[str, int] = {}
        by_reason: dict[str, int] = {}
        for status, reason, count in rows:
            by_status[status] = by_status.get(status, 0) + count
            by_reason[reason] = by_reason.get(reason, 0) + count
        return DlqStats(sum(by_status.values()), by_status, by_reason)
