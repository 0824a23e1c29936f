"""The Litestar application: routes, error handlers, OpenAPI at /openapi.json."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, get
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from tasker.api import errors
from tasker.api.dlq import DlqRoutes
from tasker.api.health import VERSION, HealthRoutes
from tasker.api.services import ApiServices
from tasker.api.steps import StepRoutes
from tasker.api.tasks import TaskRoutes
from tasker.api.templates import TemplateRoutes

_SECURITY = Components(
    security_schemes={
        "ApiKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header"),
        "Bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
    }
)


@get("/openapi.json", include_in_schema=False, sync_to_thread=False)
def openapi_document(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The OpenAPI 3 document of this API."""
    document: dict[str, Any] = request.app.openapi_schema.to_schema()
    return document


_ROUTES: list[Any] = [
    TaskRoutes,
    StepRoutes,
    TemplateRoutes,
    DlqRoutes,
    HealthRoutes,
    openapi_document,
]


def build_app(services: ApiServices) -> Litestar:
    """The API over `services`; the caller serves it (see `tasker.api.server`)."""
    return Litestar(
        route_handlers=_ROUTES,
        exception_handlers=errors.HANDLERS,
        state=State({"services": services, "authenticator": services.authenticator}),
        openapi_config=OpenAPIConfig(
            title="Tasker orchestration API",
            version=VERSION,
            path="/docs",
            components=_SECURITY,
            security=[{"ApiKey": []}, {"Bearer": []}] if services.config.auth_enabled else None,
        ),
        on_shutdown=[lambda: services.waiter.stop()],
        debug=False,
        logging_config=None,  # the process configured logging (runtime.configure_logging)
    )
