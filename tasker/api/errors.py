"""API errors: JSON with a stable `code` and a message naming the field.

Route code raises `ApiError`; Litestar's own exceptions (validation, 401/403/404/405) and
anything unexpected are turned into the same `ErrorBody` shape here.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from tasker.api.schemas import Error, ErrorBody

log = logging.getLogger(__name__)

_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "unprocessable",
    503: "unavailable",
}


class ApiError(Exception):
    """An error the API answers with `status` and a stable `code`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        details: list[str] | None = None,
        task_uuid: UUID | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = Error(code, message, field, details or [], task_uuid)
        self.headers = headers or {}


def not_found(kind: str, ident: object) -> ApiError:
    return ApiError(404, f"{kind}_not_found", f"{kind} {ident} does not exist")


def _response(status: int, error: Error, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(ErrorBody(error), status_code=status, headers=headers)


def on_api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    return _response(exc.status, exc.error, exc.headers)


def on_validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    problems = exc.extra if isinstance(exc.extra, list) else []
    fields = [_field(problem) for problem in problems if isinstance(problem, dict)]
    details = [_describe(problem) for problem in problems if isinstance(problem, dict)]
    field = next((f for f in fields if f), None)
    message = "; ".join(details) or str(exc.detail)
    return _response(400, Error("invalid_request", message, field, details))


def _field(problem: dict[str, Any]) -> str | None:
    key = problem.get("key")
    if key:
        return str(key)
    message = str(problem.get("message", ""))
    if "`$." in message:  # msgspec: "Expected `int`, got `str` - at `$.priority`"
        return message.split("`$.", 1)[1].split("`", 1)[0]
    return None


def _describe(problem: dict[str, Any]) -> str:
    field = _field(problem)
    message = str(problem.get("message", "invalid"))
    source = problem.get("source")
    where = f"{source} parameter {field!r}" if source and field else (field or "request body")
    return f"{where}: {message}"


def on_http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    code = _CODES.get(exc.status_code, "error")
    headers = dict(exc.headers or {})
    return _response(exc.status_code, Error(code, str(exc.detail)), headers)


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    message = f"internal error ({type(exc).__name__}); see the orchestrator's log"
    return _response(500, Error("internal_error", message))


HANDLERS: dict[type[Exception] | int, Any] = {
    ApiError: on_api_error,
    ValidationException: on_validation_error,
    HTTPException: on_http_error,
    Exception: on_unexpected,
}


def responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error statuses a route answers (always with `ErrorBody`)."""
    return {
        status: ResponseSpec(data_container=ErrorBody, description=_CODES.get(status, "error"))
        for status in sorted({400, 401, 403, *statuses})
    }
