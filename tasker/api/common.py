"""Helpers the route modules share: services, paging, state errors as API errors."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from litestar import Request
from litestar.datastructures import State

from tasker.api import schemas, views
from tasker.api.errors import ApiError, not_found
from tasker.api.services import ApiServices
from tasker.state.errors import StaleTransitionError, StateError, TaskNotFoundError


def services(state: State) -> ApiServices:
    found: ApiServices = state.services
    return found


def pagination(page: int, per_page: int, total: int) -> schemas.Pagination:
    pages = max(math.ceil(total / per_page), 1)
    return schemas.Pagination(page, per_page, total, pages, page < pages, page > 1)


def actor(request: Request[Any, Any, Any], claimed: str = "api") -> str:
    """Who acts: the authenticated caller, else what the request says (auth off)."""
    principal = request.scope.get("tasker_principal")
    return str(principal) if principal else claimed


@contextmanager
def state_errors() -> Iterator[None]:
    """Answer the state layer's errors with 404 / 409 and their own messages."""
    try:
        yield
    except TaskNotFoundError as exc:
        raise not_found("task", exc.task_uuid) from exc
    except StaleTransitionError as exc:
        raise ApiError(409, "invalid_state", str(exc), field="current_state") from exc
    except StateError as exc:
        if "does not exist" in str(exc):
            raise ApiError(404, "not_found", str(exc)) from exc
        raise ApiError(409, "state_conflict", str(exc)) from exc


def task_of(svc: ApiServices, task_uuid: UUID) -> schemas.Task:
    with state_errors():
        return views.task(svc.repository.get_task(task_uuid))


def step_of(svc: ApiServices, task_uuid: UUID, step_uuid: UUID) -> schemas.Step:
    task = task_of(svc, task_uuid)
    for step in task.steps:
        if step.step_uuid == step_uuid:
            return step
    raise ApiError(404, "step_not_found", f"task {task_uuid} has no step {step_uuid}")
