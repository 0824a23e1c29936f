"""/v1/tasks/{task}/workflow_steps: read steps, act on one (PATCH), read the audit trail."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, get, patch
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody
from opentelemetry.trace import SpanKind

from tasker.api import schemas, views
from tasker.api.auth import requires
from tasker.api.common import actor, services, state_errors, step_of, task_of
from tasker.api.errors import responses
from tasker.api.services import ApiServices
from tasker.state.operations import AuditRecord, Operations
from tasker.telemetry import tracing


class StepRoutes(Controller):
    path = "/v1/tasks/{task_uuid:uuid}"
    tags = ["steps"]

    @get(
        "/workflow_steps",
        guards=[requires("tasks:read")],
        responses=responses(404),
        sync_to_thread=True,
        summary="A task's steps, in template order",
    )
    def index(self, task_uuid: FromPath[UUID], state: State) -> list[schemas.Step]:
        return task_of(services(state), task_uuid).steps

    @get(
        "/workflow_steps/{step_uuid:uuid}",
        guards=[requires("tasks:read")],
        responses=responses(404),
        sync_to_thread=True,
        summary="One step",
    )
    def show(
        self, task_uuid: FromPath[UUID], step_uuid: FromPath[UUID], state: State
    ) -> schemas.Step:
        return step_of(services(state), task_uuid, step_uuid)

    @patch(
        "/workflow_steps/{step_uuid:uuid}",
        guards=[requires("steps:resolve")],
        responses=responses(404, 409, 503),
        sync_to_thread=True,
        summary="reset_for_retry | resolve_manually | complete_manually",
    )
    def act(
        self,
        task_uuid: FromPath[UUID],
        step_uuid: FromPath[UUID],
        data: JSONBody[schemas.StepUpdate],
        state: State,
        request: Request[Any, Any, Any],
    ) -> schemas.Step:
        svc = services(state)
        step_of(svc, task_uuid, step_uuid)  # 404 for a step of another task
        operations = svc.operations()
        with _operator_span(operations, request, task_uuid, step_uuid, data.action_type):
            with state_errors():
                outcome = operations.step_action(
                    task_uuid, step_uuid, data.action_type,
                    actor=actor(request, data.resolved_by), reason=data.reason,
                    result=data.completion_data,
                )  # fmt: skip
            svc.orchestrator.after_operator_action(outcome)  # continues the span's trace
        return step_of(svc, task_uuid, step_uuid)

    @get(
        "/workflow_steps/{step_uuid:uuid}/audit",
        guards=[requires("tasks:read")],
        responses=responses(404),
        sync_to_thread=True,
        summary="A step's transitions and the operator actions on it",
    )
    def step_audit(
        self, task_uuid: FromPath[UUID], step_uuid: FromPath[UUID], state: State
    ) -> schemas.Audit:
        svc = services(state)
        step_of(svc, task_uuid, step_uuid)
        transitions = svc.repository.step_transitions(step_uuid)
        return _audit(svc, task_uuid, step_uuid, transitions)

    @get(
        "/audit",
        guards=[requires("tasks:read")],
        responses=responses(404),
        sync_to_thread=True,
        summary="A task's transitions and every operator action on it",
    )
    def task_audit(self, task_uuid: FromPath[UUID], state: State) -> schemas.Audit:
        svc = services(state)
        task_of(svc, task_uuid)
        return _audit(svc, task_uuid, None, svc.repository.task_transitions(task_uuid))


def _operator_span(
    operations: Operations,
    request: Request[Any, Any, Any],
    task_uuid: UUID,
    step_uuid: UUID,
    action: str,
) -> Any:
    """The action's span, in the task's trace (what it sets off follows there), linked to
    the caller's trace (telemetry hook)."""
    caller = dict(request.headers.items())
    stored = operations.trace_context(task_uuid)
    return tracing.span(
        "PATCH /v1/tasks/{task_uuid}/workflow_steps/{step_uuid}",
        stored or caller,
        kind=SpanKind.SERVER,
        links=[caller] if stored else [],
        task_uuid=task_uuid,
        step_uuid=step_uuid,
        action=action,
    )


def _audit(
    svc: ApiServices, task_uuid: UUID, step_uuid: UUID | None, transitions: list[Any]
) -> schemas.Audit:
    with state_errors():
        records = _operator_actions(svc, task_uuid)
    actions = [
        schemas.OperatorAction(r.step_uuid, r.action, r.actor, r.reason, r.details, r.created_at)
        for r in records
        if step_uuid is None or r.step_uuid == step_uuid
    ]
    return schemas.Audit(task_uuid, step_uuid, views.transitions(transitions), actions)


def _operator_actions(svc: ApiServices, task_uuid: UUID) -> list[AuditRecord]:
    return svc.operations().audit(task_uuid)
