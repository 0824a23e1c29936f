"""The Python client applications (and the CLI) use: the orchestrator's REST API over HTTP.

    with TaskerClient("http://127.0.0.1:8080", api_key="...") as client:
        task_uuid = client.create_task("examples", "linear_workflow", "1.0.0", {"even_number": 2})
        task = client.wait(task_uuid, timeout=60)

Waiting is a long poll: the server answers as soon as the task finishes (it LISTENs for
the finalizer's NOTIFY), so completion costs no polling; with `on_progress` the window is
short, to report progress on the way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar
from uuid import UUID

import httpx
import msgspec

from tasker.api import schemas
from tasker.config import Config
from tasker.telemetry import tracing

T = TypeVar("T")
TERMINAL = frozenset({"complete", "error", "cancelled", "resolved_manually"})
TaskRef = UUID | str | schemas.Task


class TaskerApiError(Exception):
    """The API refused a request; `code` is stable, the message names the field."""

    def __init__(self, status: int, error: schemas.Error) -> None:
        detail = "".join(f"\n  - {d}" for d in error.details if d not in error.message)
        super().__init__(f"{error.message}{detail}")
        self.status = status
        self.code = error.code
        self.field = error.field
        self.details = error.details
        self.task_uuid = error.task_uuid


class TaskerConnectionError(ConnectionError):
    """The API did not answer at all."""


class TaskWaitTimeoutError(TimeoutError):
    def __init__(self, task_uuid: UUID, timeout: float, status: str) -> None:
        super().__init__(f"task {task_uuid} still {status!r} after {timeout:.1f}s")
        self.task_uuid = task_uuid


def task_id(task: TaskRef) -> UUID:
    if isinstance(task, schemas.Task):
        return task.task_uuid
    if isinstance(task, UUID):
        return task
    try:
        return UUID(str(task))
    except ValueError:
        raise ValueError(f"{task!r} is not a task UUID") from None


class TaskerClient:
    """A client of one orchestrator's API; thread-safe, keeps connections alive."""

    def __init__(
        self,
        api_url: str | Config,
        api_key: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        self.config = api_url if isinstance(api_url, Config) else None
        if isinstance(api_url, Config):
            api_key = api_key or api_url.api_key
            token = token or api_url.api_token
            api_url = api_url.client_api_url
        self.api_url = api_url.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.api_url, headers=headers, timeout=timeout)
        self._repository: Any = None

    # Transport -----------------------------------------------------------------------------

    def request(
        self, method: str, path: str, into: type[T], *, body: Any = None, **kwargs: Any
    ) -> T:
        """Call the API; decode the answer into `into` or raise TaskerApiError."""
        headers = tracing.inject()  # continue the caller's trace on the server
        if body is not None:
            kwargs["content"] = msgspec.json.encode(body)
            headers["content-type"] = "application/json"
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise TaskerConnectionError(
                f"cannot reach the Tasker API at {self.api_url} ({exc}); is the orchestrator "
                "running? (set --url or TASKER_API_URL)"
            ) from exc
        if response.status_code >= 400:
            raise _api_error(response)
        if into is bytes:  # not JSON (e.g. /metrics)
            return response.content  # type: ignore[return-value]
        return msgspec.json.decode(response.content, type=into)

    # Tasks ---------------------------------------------------------------------------------

    def submit(self, request: schemas.TaskCreate) -> schemas.Task:
        """Create a task; returns it as just created (409 for a duplicate, with its id)."""
        return self.request("POST", "/v1/tasks", schemas.Task, body=request)

    def create_task(
        self,
        namespace: str,
        name: str,
        version: str = "1.0.0",
        context: dict[str, Any] | None = None,
        **fields: Any,
    ) -> UUID:
        """Create a task; returns its id."""
        request = schemas.TaskCreate(
            name=name, namespace=namespace, version=version, context=context or {}, **fields
        )
        return self.submit(request).task_uuid

    def get_task(self, task: TaskRef, *, wait_seconds: float = 0.0) -> schemas.Task:
        params = {"wait_seconds": wait_seconds} if wait_seconds > 0 else {}
        path = f"/v1/tasks/{task_id(task)}"
        return self.request("GET", path, schemas.Task, params=params, timeout=wait_seconds + 30)

    def list_tasks(self, *, page: int = 1, per_page: int = 25, **filters: Any) -> schemas.TaskList:
        params = {"page": page, "per_page": per_page, **_given(filters)}
        return self.request("GET", "/v1/tasks", schemas.TaskList, params=params)

    def cancel_task(self, task: TaskRef, reason: str | None = None) -> schemas.Task:
        params = _given({"reason": reason})
        return self.request("DELETE", f"/v1/tasks/{task_id(task)}", schemas.Task, params=params)

    def wait(
        self,
        task: TaskRef,
        *,
        timeout: float = 60.0,
        on_progress: Callable[[schemas.Task], None] | None = None,
        progress_interval: float = 0.5,
    ) -> schemas.Task:
        """Block until the task reaches a terminal state; report progress while waiting."""
        deadline = time.monotonic() + timeout
        window = progress_interval if on_progress is not None else 20.0
        while True:
            remaining = deadline - time.monotonic()
            current = self.get_task(task, wait_seconds=max(min(window, remaining), 0.0))
            if on_progress is not None:
                on_progress(current)
            if current.status in TERMINAL:
                return current
            if deadline - time.monotonic() <= 0:
                raise TaskWaitTimeoutError(current.task_uuid, timeout, current.status)

    # Steps ---------------------------------------------------------------------------------

    def steps(self, task: TaskRef) -> list[schemas.Step]:
        path = f"/v1/tasks/{task_id(task)}/workflow_steps"
        return self.request("GET", path, list[schemas.Step])

    def get_step(self, task: TaskRef, step_uuid: UUID | str) -> schemas.Step:
        path = f"/v1/tasks/{task_id(task)}/workflow_steps/{step_uuid}"
        return self.request("GET", path, schemas.Step)

    def step_action(
        self, task: TaskRef, step_uuid: UUID | str, action: schemas.StepAction, **fields: Any
    ) -> schemas.Step:
        """reset_for_retry | resolve_manually | complete_manually (completion_data=...)."""
        body = schemas.StepUpdate(action_type=action, **_given(fields))
        path = f"/v1/tasks/{task_id(task)}/workflow_steps/{step_uuid}"
        return self.request("PATCH", path, schemas.Step, body=body)

    def audit(self, task: TaskRef, step_uuid: UUID | str | None = None) -> schemas.Audit:
        base = f"/v1/tasks/{task_id(task)}"
        path = f"{base}/workflow_steps/{step_uuid}/audit" if step_uuid else f"{base}/audit"
        return self.request("GET", path, schemas.Audit)

    # Templates, DLQ, system ----------------------------------------------------------------

    def list_templates(self, namespace: str | None = None) -> schemas.TemplateList:
        params = _given({"namespace": namespace})
        return self.request("GET", "/v1/templates", schemas.TemplateList, params=params)

    def get_template(self, namespace: str, name: str, version: str) -> schemas.TemplateDetail:
        path = f"/v1/templates/{namespace}/{name}/{version}"
        return self.request("GET", path, schemas.TemplateDetail)

    def dlq_list(self, *, page: int = 1, per_page: int = 25, **filters: Any) -> schemas.DlqList:
        params = {"page": page, "per_page": per_page, **_given(filters)}
        return self.request("GET", "/v1/dlq", schemas.DlqList, params=params)

    def dlq_get(self, entry_uuid: UUID | str) -> schemas.DlqEntry:
        return self.request("GET", f"/v1/dlq/entry/{entry_uuid}", schemas.DlqEntry)

    def dlq_for_task(self, task: TaskRef) -> list[schemas.DlqEntry]:
        return self.request("GET", f"/v1/dlq/task/{task_id(task)}", list[schemas.DlqEntry])

    def dlq_update(self, entry_uuid: UUID | str, status: str, **fields: Any) -> schemas.DlqEntry:
        body = msgspec.convert({"resolution_status": status, **_given(fields)}, schemas.DlqUpdate)
        path = f"/v1/dlq/entry/{entry_uuid}"
        return self.request("PATCH", path, schemas.DlqEntry, body=body)

    def dlq_stats(self) -> schemas.DlqStats:
        return self.request("GET", "/v1/dlq/stats", schemas.DlqStats)

    def workers(self) -> list[schemas.WorkerInfo]:
        return self.request("GET", "/v1/workers", schemas.WorkerList).workers

    def health(self) -> schemas.DetailedHealth:
        return self.request("GET", "/health/detailed", schemas.DetailedHealth)

    def metrics(self) -> str:
        return self.request("GET", "/metrics", bytes).decode()

    def wait_until_ready(self, timeout: float = 30.0) -> None:
        """Return once the API answers /health/ready with 200 (startup only)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.request("GET", "/health/ready", schemas.Health)
                return
            except (TaskerConnectionError, TaskerApiError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    # Direct state access (tests and tools in the orchestrator's trust domain) --------------

    @property
    def repository(self) -> Any:
        """A StateRepository on the configured database (only for a client made from a
        Config). Applications use the API; this serves tests and operational tooling."""
        if self._repository is None:
            if self.config is None:
                raise AttributeError("repository needs a client made from a Config")
            from tasker.state.db import Database
            from tasker.state.repository import StateRepository

            self._repository = StateRepository(Database(self.config.database_url, max_size=2))
        return self._repository

    def close(self) -> None:
        self._http.close()
        if self._repository is not None:
            self._repository.database.close()

    def __enter__(self) -> TaskerClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _given(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _api_error(response: httpx.Response) -> TaskerApiError:
    try:
        body = msgspec.json.decode(response.content, type=schemas.ErrorBody)
        return TaskerApiError(response.status_code, body.error)
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = response.text[:300] or response.reason_phrase
        return TaskerApiError(response.status_code, schemas.Error("http_error", text))
