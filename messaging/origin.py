"""Which task and step a message belongs to, read leniently from a body that may be broken.

A poison message (undecodable, or one whose handling keeps failing) can still name its task:
the investigation record then goes to the right task. Only a JSON object's `task_uuid`,
`step_uuid` and `fence` (or `attempt`) fields are read, each one only if it is well-formed.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec


class MessageOrigin(msgspec.Struct, frozen=True):
    """The task a message names, and the step dispatch it answers if it says so."""

    task_uuid: UUID
    step_uuid: UUID | None = None
    fence: int | None = None


def origin_of(body: bytes) -> MessageOrigin | None:
    """The task (and step dispatch) `body` names, or None if it names no task."""
    try:
        fields = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(fields, dict):
        return None
    task_uuid = _uuid(fields.get("task_uuid"))
    if task_uuid is None:
        return None
    fence = _positive_int(fields.get("fence")) or _positive_int(fields.get("attempt"))
    return MessageOrigin(task_uuid, _uuid(fields.get("step_uuid")), fence)


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _positive_int(value: Any) -> int | None:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    return value if is_int and value > 0 else None
