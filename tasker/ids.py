"""Identifiers: UUIDv7, generated in Python because PostgreSQL 15 has no uuidv7()."""

from uuid import UUID

from uuid6 import uuid7


def new_id() -> UUID:
    """A time-ordered UUID (v7): new rows land at the right edge of their B-tree index."""
    value: UUID = uuid7()
    return UUID(bytes=value.bytes)
