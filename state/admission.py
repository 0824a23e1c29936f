"""Admission: whether a task request may become a task, and how duplicates are recognised.

Checked before anything is written: the context's size, the template's `input_schema`
(JSON Schema), and the identity the template's strategy gives the request.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jsonschema
import msgspec

from tasker.state.templates import TaskTemplate

_canonical = msgspec.json.Encoder(order="sorted")


class TaskRejectedError(ValueError):
    """A task request that can never succeed as sent; `problems` says what to fix."""

    def __init__(self, template: str, problems: list[str]) -> None:
        listed = "; ".join(problems)
        super().__init__(f"task request for {template} rejected: {listed}")
        self.template = template
        self.problems = problems


def check_request(
    template: TaskTemplate,
    context: dict[str, Any],
    *,
    idempotency_key: str | None,
    max_context_bytes: int,
) -> str | None:
    """Validate a request against its template; return its identity hash (None if unique)."""
    encoded = _canonical.encode(context)
    problems = _size_problems(encoded, max_context_bytes) + _schema_problems(template, context)
    if template.identity_strategy == "caller_provided" and not idempotency_key:
        problems.append(
            "this template's identity_strategy is caller_provided: send an idempotency_key"
        )
    if problems:
        raise TaskRejectedError(template.identity, problems)
    return identity_hash(template, encoded, idempotency_key)


def _size_problems(encoded: bytes, limit: int) -> list[str]:
    if len(encoded) <= limit:
        return []
    return [f"context is {len(encoded)} bytes, over the limit of {limit} (max_context_bytes)"]


def _schema_problems(template: TaskTemplate, context: dict[str, Any]) -> list[str]:
    if not template.input_schema:
        return []
    validator = jsonschema.Draft202012Validator(template.input_schema)
    return [
        f"context{_path(error.absolute_path)}: {error.message}"
        for error in sorted(validator.iter_errors(context), key=lambda e: list(e.absolute_path))
    ]


def _path(parts: Any) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)


def identity_hash(template: TaskTemplate, encoded_context: bytes, key: str | None) -> str | None:
    """The hash that makes duplicates collide, per the template's identity strategy.

    A caller's idempotency_key always identifies its request, whatever the strategy.
    """
    if key:
        material = f"{template.identity}\x00key\x00{key}".encode()
    elif template.identity_strategy == "strict":
        material = f"{template.identity}\x00context\x00".encode() + encoded_context
    else:
        return None
    return hashlib.sha256(material).hexdigest()
