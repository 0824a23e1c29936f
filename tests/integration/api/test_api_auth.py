"""Auth: API keys and JWT bearer tokens, a permission per operation; 401 without
credentials, 403 without the permission; health probes open; secrets never logged."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from tasker.cli.cluster import free_port
from tasker.client import TaskerApiError, TaskerClient
from tasker.config import with_overrides
from tests.integration.api.conftest import InProcessCluster

pytestmark = pytest.mark.postgres

READER_KEY = "reader-key-6f1c2e"
ADMIN_KEY = "admin-key-93ab0d"
JWT_SECRET = "jwt-secret-for-tests-only-0123456789abcdef"


@pytest.fixture(scope="module")
def secured_url(api_cluster: InProcessCluster) -> str:
    """The cluster's API again, on another port, with auth on."""
    config = with_overrides(
        api_cluster.config,
        api_bind=f"127.0.0.1:{free_port()}",
        auth_enabled=True,
        api_keys=[f"{READER_KEY}=tasks:read templates:read", f"{ADMIN_KEY}=*"],
        jwt_secret=JWT_SECRET,
    )
    return api_cluster.serve(config)


def token(permissions: list[str], *, expires_in: float = 300, secret: str = JWT_SECRET) -> str:
    claims = {"sub": "ci-bot", "permissions": permissions, "exp": int(time.time() + expires_in)}
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture
def anonymous(secured_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secured_url) as client:
        yield client


def _error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def test_without_credentials_a_request_is_401_with_a_challenge(anonymous: httpx.Client) -> None:
    response = anonymous.get("/v1/tasks")

    assert response.status_code == 401
    assert _error(response)["code"] == "unauthorized"
    assert "Bearer" in response.headers["www-authenticate"]


def test_an_unknown_key_is_401(anonymous: httpx.Client) -> None:
    response = anonymous.get("/v1/tasks", headers={"X-API-Key": "not-a-key"})

    assert response.status_code == 401


def test_a_key_without_the_permission_is_403_naming_it(secured_url: str) -> None:
    with TaskerClient(secured_url, api_key=READER_KEY) as reader:
        assert reader.list_tasks().pagination.page == 1  # tasks:read is granted
        with pytest.raises(TaskerApiError) as raised:
            reader.create_task("examples", "linear_workflow", "1.0.0", {"even_number": 2})

    assert (raised.value.status, raised.value.code) == (403, "forbidden")
    assert "tasks:create" in str(raised.value)


def test_a_key_with_every_permission_may_create_and_read(secured_url: str) -> None:
    with TaskerClient(secured_url, api_key=ADMIN_KEY) as admin:
        task = admin.wait(
            admin.create_task("examples", "linear_workflow", "1.0.0", {"even_number": 2})
        )
        assert task.status == "complete"
        assert "tasker_tasks_created" in admin.metrics()


def test_a_jwt_grants_the_permissions_it_claims(secured_url: str) -> None:
    with TaskerClient(secured_url, token=token(["templates:read"])) as client:
        assert client.list_templates().templates
        with pytest.raises(TaskerApiError) as raised:
            client.dlq_stats()

    assert raised.value.status == 403 and "dlq:read" in str(raised.value)


@pytest.mark.parametrize(
    "bad_token",
    [
        pytest.param(token(["*"], expires_in=-60), id="expired"),
        pytest.param(token(["*"], secret="another-secret-of-sufficient-length-42"), id="forged"),
        pytest.param("not.a.jwt", id="garbage"),
    ],
)
def test_an_invalid_jwt_is_401(anonymous: httpx.Client, bad_token: str) -> None:
    response = anonymous.get("/v1/templates", headers={"Authorization": f"Bearer {bad_token}"})

    assert response.status_code == 401
    assert _error(response)["message"].startswith("invalid bearer token")


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/health"])
def test_the_probes_are_open(anonymous: httpx.Client, path: str) -> None:
    assert anonymous.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/metrics", "/health/detailed", "/v1/workers", "/v1/dlq"])
def test_operator_endpoints_need_credentials(anonymous: httpx.Client, path: str) -> None:
    assert anonymous.get(path).status_code == 401


def test_secrets_never_reach_the_logs(
    anonymous: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_token = token(["*"], secret="a-leaked-secret-never-to-be-logged-000")

    anonymous.get("/v1/tasks", headers={"X-API-Key": "sk-live-super-secret"})
    anonymous.get("/v1/tasks", headers={"Authorization": f"Bearer {secret_token}"})
    anonymous.get("/v1/tasks", headers={"X-API-Key": ADMIN_KEY})

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "rejected" in logged  # the failures are logged...
    for secret in ("sk-live-super-secret", secret_token, ADMIN_KEY, JWT_SECRET):
        assert secret not in logged  # ...without the credentials
