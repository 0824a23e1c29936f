"""/v1/tasks: create, list, read (with an optional long poll), cancel."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from opentelemetry.trace import SpanKind

from tasker.actors.orchestrator import TaskCreationFailedError, admission_of
from tasker.api import schemas, views
from tasker.api.auth import requires
from tasker.api.common import actor, pagination, services, state_errors, task_of
from tasker.api.errors import ApiError, responses
from tasker.api.services import ApiServices
from tasker.ids import new_id
from tasker.messaging.messages import TaskRequestMessage
from tasker.state.states import TERMINAL_TASK_STATES
from tasker.telemetry import metrics, tracing

_CREATION_TIMEOUT_SECONDS = 30.0


class TaskRoutes(Controller):
    path = "/v1/tasks"
    tags = ["tasks"]

    @post(
        "/",
        guards=[requires("tasks:create")],
        responses=responses(404, 409, 422, 503),
        summary="Create a task from a registered template",
    )
    async def create(
        self, data: JSONBody[schemas.TaskCreate], state: State, request: Request[Any, Any, Any]
    ) -> schemas.Task:
        carrier = {key: value for key, value in request.headers.items()}
        with tracing.span(
            "POST /v1/tasks", carrier, kind=SpanKind.SERVER, namespace=data.namespace
        ):
            return await _create(services(state), data)

    @get(
        "/",
        guards=[requires("tasks:read")],
        responses=responses(),
        sync_to_thread=True,
        summary="List tasks, newest first",
    )
    def index(
        self,
        state: State,
        page: Annotated[int, QueryParameter(ge=1, le=1_000_000)] = 1,
        per_page: Annotated[int, QueryParameter(ge=1, le=100)] = 25,
        namespace: FromQuery[str | None] = None,
        status: FromQuery[schemas.TaskStatus | None] = None,
        name: FromQuery[str | None] = None,
    ) -> schemas.TaskList:
        found = services(state).reads.list_tasks(
            page=page, per_page=per_page, namespace=namespace, status=status, name=name
        )
        tasks = [views.task(view) for view in found.tasks]
        return schemas.TaskList(tasks, pagination(page, per_page, found.total_count))

    @get(
        "/{task_uuid:uuid}",
        guards=[requires("tasks:read")],
        responses=responses(404),
        summary="A task with its steps; wait_seconds holds the answer until it finishes",
    )
    async def show(
        self,
        task_uuid: FromPath[UUID],
        state: State,
        wait_seconds: Annotated[float, QueryParameter(ge=0.0, le=300.0)] = 0.0,
    ) -> schemas.Task:
        svc = services(state)
        wait = min(wait_seconds, svc.config.api_max_wait_seconds)
        return await _finished_or_current(svc, task_uuid, wait)

    @delete(
        "/{task_uuid:uuid}",
        guards=[requires("tasks:cancel")],
        responses=responses(404, 409, 503),
        status_code=200,
        sync_to_thread=True,
        summary="Cancel a task",
    )
    def cancel(
        self,
        task_uuid: FromPath[UUID],
        state: State,
        request: Request[Any, Any, Any],
        reason: FromQuery[str] = "cancelled through the API",
    ) -> schemas.Task:
        svc = services(state)
        with state_errors():  # the orchestrator also tells the workers
            svc.orchestrator.cancel_task(task_uuid, actor=actor(request), reason=reason)
        return task_of(svc, task_uuid)


async def _create(svc: ApiServices, data: schemas.TaskCreate) -> schemas.Task:
    """Create the task, awaiting the initializer's reply on the event loop: no worker
    thread is woken to wait for it, nor the loop woken by one (two hops a request)."""
    orchestrator = svc.orchestrator
    if orchestrator.depth_is_stale():  # a query, once a second: off the loop
        retry_after = await asyncio.to_thread(orchestrator.backpressure)
    else:
        retry_after = orchestrator.backpressure()
    if retry_after is not None:
        metrics.TASKS_REQUESTED.add(1, {"namespace": data.namespace, "outcome": "throttled"})
        raise ApiError(
            503, "backpressure",
            f"step queues are deeper than the configured limit; retry in {retry_after}s",
            headers={"Retry-After": str(retry_after)},
        )  # fmt: skip
    fields = msgspec.structs.asdict(data)
    request = TaskRequestMessage(task_uuid=new_id(), **fields)
    try:
        submitted = asyncio.wrap_future(orchestrator.submit_task(request))
        admission = admission_of(await asyncio.wait_for(submitted, _CREATION_TIMEOUT_SECONDS))
    except TimeoutError as exc:
        raise ApiError(
            503, "unavailable",
            f"no reply from the task initializer in {_CREATION_TIMEOUT_SECONDS:g}s",
        ) from exc  # fmt: skip
    except TaskCreationFailedError as exc:
        raise ApiError(503, "unavailable", f"could not create the task: {exc}") from exc
    outcome = "created" if admission.created else "refused"
    metrics.TASKS_REQUESTED.add(1, {"namespace": data.namespace, "outcome": outcome})
    if admission.template_missing:
        raise ApiError(404, "template_not_found", admission.rejection or "", field="name")
    if admission.rejection is not None:
        raise ApiError(
            422, "invalid_task_request", admission.rejection, field="context",
            details=admission.problems,
        )  # fmt: skip
    if not admission.created:
        raise ApiError(
            409, "duplicate_task",
            f"an identical task already exists: {admission.task_uuid} ({admission.status})",
            task_uuid=admission.task_uuid,
        )  # fmt: skip
    if admission.task is not None:
        return views.task(admission.task)
    assert admission.task_uuid is not None  # created
    return await asyncio.to_thread(task_of, svc, admission.task_uuid)


async def _finished_or_current(svc: ApiServices, task_uuid: UUID, wait: float) -> schemas.Task:
    """The task once it is finished, or as it is when `wait` seconds have passed."""
    if wait <= 0:
        return await asyncio.to_thread(task_of, svc, task_uuid)
    finished = await svc.waiter.register(task_uuid)  # before reading: no notice slips by
    try:
        task = await asyncio.to_thread(task_of, svc, task_uuid)
        if task.status in TERMINAL_TASK_STATES:
            return task
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(finished), timeout=wait)
        return await asyncio.to_thread(task_of, svc, task_uuid)
    finally:
        svc.waiter.unregister(task_uuid, finished)
