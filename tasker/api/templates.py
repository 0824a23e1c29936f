"""/v1/templates: the registered task templates."""

from __future__ import annotations

from litestar import Controller, get
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery

from tasker.api import schemas
from tasker.api.auth import requires
from tasker.api.common import services
from tasker.api.errors import ApiError, responses
from tasker.state.errors import TemplateNotFoundError
from tasker.state.templates import TaskTemplate


class TemplateRoutes(Controller):
    path = "/v1/templates"
    tags = ["templates"]

    @get(
        "/",
        guards=[requires("templates:read")],
        responses=responses(),
        sync_to_thread=True,
        summary="Registered templates",
    )
    def index(self, state: State, namespace: FromQuery[str | None] = None) -> schemas.TemplateList:
        found = services(state).reads.list_templates(namespace)
        return schemas.TemplateList(
            [
                schemas.TemplateSummary(t.namespace, t.name, t.version, t.description, t.step_count)
                for t in found
            ]
        )

    @get(
        "/{namespace:str}/{name:str}/{version:str}",
        guards=[requires("templates:read")],
        responses=responses(404),
        sync_to_thread=True,
        summary="One template, with its steps and their dependencies",
    )
    def show(
        self, namespace: FromPath[str], name: FromPath[str], version: FromPath[str], state: State
    ) -> schemas.TemplateDetail:
        try:
            registered = services(state).repository.get_template(namespace, name, version)
        except TemplateNotFoundError as exc:
            raise ApiError(404, "template_not_found", str(exc)) from exc
        return detail(registered.template)


def detail(template: TaskTemplate) -> schemas.TemplateDetail:
    steps = [
        schemas.TemplateStep(
            name=step.name,
            description=step.description,
            handler=step.handler.callable,
            type=str(step.type),
            dependencies=list(step.dependencies),
            max_attempts=step.retry.max_attempts,
            timeout_seconds=step.timeout_seconds,
            publishes_events=[_event_name(e) for e in step.publishes_events],
        )
        for step in template.steps
    ]
    return schemas.TemplateDetail(
        namespace=template.namespace_name,
        name=template.name,
        version=template.version,
        description=template.description,
        steps=steps,
        input_schema=template.input_schema or None,
    )


def _event_name(event: object) -> str:
    return str(event.get("name", event)) if isinstance(event, dict) else str(event)
