"""Typed errors of the state layer: each names the object and the states involved."""

from __future__ import annotations

from uuid import UUID


class StateError(Exception):
    """Base of every state-layer error."""


class StaleTransitionError(StateError):
    """A guarded transition found the object in a state other than the one expected.

    Either someone else moved it first (a race: re-read and decide again) or the request
    was illegal from the actual state.
    """

    def __init__(
        self, kind: str, uuid: UUID, expected: frozenset[str], actual: str | None, target: str
    ) -> None:
        expected_text = ", ".join(sorted(expected))
        super().__init__(
            f"{kind} {uuid}: cannot move to {target!r}: expected state in [{expected_text}], "
            f"actual state {actual!r}"
        )
        self.kind = kind
        self.uuid = uuid
        self.expected = expected
        self.actual = actual
        self.target = target


class IllegalTransitionError(StateError):
    """The requested transition is not in the state machine's table at all."""

    def __init__(self, kind: str, uuid: UUID, current: str, target: str) -> None:
        super().__init__(f"{kind} {uuid}: {current!r} -> {target!r} is not an allowed transition")
        self.kind = kind
        self.uuid = uuid


class TemplateNotFoundError(StateError):
    """No template is registered under this namespace, name and version."""

    def __init__(self, namespace: str, name: str, version: str) -> None:
        super().__init__(
            f"no task template {namespace}/{name}@{version} is registered; register it with "
            "the orchestrator's template path (TASKER_TEMPLATE_PATH)"
        )
        self.namespace = namespace
        self.name = name
        self.version = version


class TaskNotFoundError(StateError):
    def __init__(self, task_uuid: UUID) -> None:
        super().__init__(f"task {task_uuid} does not exist")
        self.task_uuid = task_uuid
