"""/v1/dlq: investigation records of tasks that cannot proceed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, patch
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from tasker.api import schemas
from tasker.api.auth import requires
from tasker.api.common import actor, pagination, services
from tasker.api.errors import ApiError, responses
from tasker.state.dlq import DeadLetterRepository, DlqEntryNotFoundError

DlqStatus = Literal["pending", "manually_resolved", "permanently_failed", "cancelled"]


def _entry(record: Any) -> schemas.DlqEntry:
    return msgspec.convert(msgspec.to_builtins(record), schemas.DlqEntry, strict=False)


def _repository(state: State) -> DeadLetterRepository:
    return services(state).dead_letters()


class DlqRoutes(Controller):
    path = "/v1/dlq"
    tags = ["dlq"]

    @get(
        "/",
        guards=[requires("dlq:read")],
        responses=responses(),
        sync_to_thread=True,
        summary="Dead letter entries, newest first",
    )
    def index(
        self,
        state: State,
        status: FromQuery[DlqStatus | None] = None,
        reason: FromQuery[str | None] = None,
        page: Annotated[int, QueryParameter(ge=1, le=1_000_000)] = 1,
        per_page: Annotated[int, QueryParameter(ge=1, le=100)] = 25,
    ) -> schemas.DlqList:
        entries, total = _repository(state).list(
            status=status, reason=reason, page=page, per_page=per_page
        )
        return schemas.DlqList([_entry(e) for e in entries], pagination(page, per_page, total))

    @get(
        "/stats",
        guards=[requires("dlq:read")],
        responses=responses(),
        sync_to_thread=True,
        summary="Entry counts by status and by reason",
    )
    def stats(self, state: State) -> schemas.DlqStats:
        found = _repository(state).stats()
        return schemas.DlqStats(found.total, found.by_status, found.by_reason)

    @get(
        "/task/{task_uuid:uuid}",
        guards=[requires("dlq:read")],
        responses=responses(),
        sync_to_thread=True,
        summary="The entries of one task",
    )
    def for_task(self, task_uuid: FromPath[UUID], state: State) -> list[schemas.DlqEntry]:
        return [_entry(e) for e in _repository(state).for_task(task_uuid)]

    @get(
        "/entry/{entry_uuid:uuid}",
        guards=[requires("dlq:read")],
        responses=responses(404),
        sync_to_thread=True,
        summary="One entry, with its snapshot of the task",
    )
    def show(self, entry_uuid: FromPath[UUID], state: State) -> schemas.DlqEntry:
        repository = _repository(state)
        with _entry_errors():
            return _entry(repository.get(entry_uuid))

    @patch(
        "/entry/{entry_uuid:uuid}",
        guards=[requires("dlq:update")],
        responses=responses(404),
        sync_to_thread=True,
        summary="Record an operator's conclusion on an entry",
    )
    def update(
        self,
        entry_uuid: FromPath[UUID],
        data: JSONBody[schemas.DlqUpdate],
        state: State,
        request: Request[Any, Any, Any],
    ) -> schemas.DlqEntry:
        repository = _repository(state)
        with _entry_errors():
            updated = repository.update(
                entry_uuid,
                status=data.resolution_status,
                resolved_by=actor(request, data.resolved_by),
                notes=data.resolution_notes or None,
            )
        return _entry(updated)


@contextmanager
def _entry_errors() -> Iterator[None]:
    try:
        yield
    except DlqEntryNotFoundError as exc:
        raise ApiError(404, "dlq_entry_not_found", str(exc)) from exc
