"""Who may call what: API keys and JWT bearer tokens, with a permission per operation.

Off unless `auth_enabled`. A key or token grants permissions (`*` grants all); each route
names the one it needs. No credentials, or bad ones: 401. Valid, without the permission:
403. Secrets are compared by hash and never logged.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import jwt
import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from tasker.config import Config, ConfigError

log = logging.getLogger(__name__)

PERMISSIONS = frozenset(
    {
        "tasks:create", "tasks:read", "tasks:cancel", "steps:resolve", "dlq:read",
        "dlq:update", "templates:read", "system:read",
    }
)  # fmt: skip
API_KEY_HEADER = "x-api-key"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tasker", ApiKey header="X-API-Key"'}


class Principal(msgspec.Struct, frozen=True):
    subject: str
    permissions: frozenset[str]

    def may(self, permission: str) -> bool:
        return "*" in self.permissions or permission in self.permissions


class Authenticator:
    """Turns a request's credentials into a Principal (or None when auth is off)."""

    def __init__(self, config: Config) -> None:
        self.enabled = config.auth_enabled
        self._keys = dict(_parse_key(entry) for entry in config.api_keys)
        self._jwt_key = config.jwt_public_key or config.jwt_secret
        self._algorithms = list(config.jwt_algorithms)
        self._issuer = config.jwt_issuer
        self._audience = config.jwt_audience
        if self.enabled and not (self._keys or self._jwt_key):
            raise ConfigError("auth_enabled", "set api_keys, jwt_secret or jwt_public_key")

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller, or NotAuthorizedException (401) when it cannot be identified."""
        key = headers.get(API_KEY_HEADER)
        if key:
            return self._by_key(key)
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            return self._by_token(token.strip())
        raise NotAuthorizedException(
            "send an API key (X-API-Key) or a bearer token", headers=_CHALLENGE
        )

    def _by_key(self, key: str) -> Principal:
        permissions = self._keys.get(_digest(key))
        if permissions is None:
            log.warning("rejected a request with an unknown API key")
            raise NotAuthorizedException("unknown API key", headers=_CHALLENGE)
        return Principal(f"api-key:{_digest(key)[:8]}", permissions)

    def _by_token(self, token: str) -> Principal:
        if not self._jwt_key:
            raise NotAuthorizedException("bearer tokens are not accepted here", headers=_CHALLENGE)
        try:
            claims = jwt.decode(
                token,
                self._jwt_key,
                algorithms=self._algorithms,
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.PyJWTError as exc:
            log.warning("rejected a bearer token: %s", type(exc).__name__)
            raise NotAuthorizedException(
                f"invalid bearer token: {exc}", headers=_CHALLENGE
            ) from exc
        return Principal(str(claims["sub"]), _claimed_permissions(claims))


def _claimed_permissions(claims: dict[str, Any]) -> frozenset[str]:
    granted = claims.get("permissions", claims.get("scope", ""))
    if isinstance(granted, str):
        return frozenset(granted.split())
    return frozenset(str(p) for p in granted) if isinstance(granted, list) else frozenset()


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _parse_key(entry: str) -> tuple[str, frozenset[str]]:
    key, sep, granted = entry.partition("=")
    permissions = frozenset(granted.replace(",", " ").split())
    unknown = permissions - PERMISSIONS - {"*"}
    if not sep or not key or not permissions or unknown:
        problem = f"unknown permissions {sorted(unknown)}" if unknown else "expected KEY=perm ..."
        raise ConfigError("api_keys", f"{problem}; permissions: {sorted(PERMISSIONS)} or *")
    return _digest(key.strip()), permissions


def requires(
    permission: str,
) -> Callable[[ASGIConnection[Any, Any, Any, Any], Any], Awaitable[None]]:
    """A route guard: the caller must hold `permission` (always passes with auth off)."""
    assert permission in PERMISSIONS, permission

    # Async, though it never waits: Litestar runs a plain function guard in a worker
    # thread, a hop (and a wake-up) on every request for a hash or a signature check.
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        authenticator: Authenticator = connection.app.state.authenticator
        if not authenticator.enabled:
            return
        principal = authenticator.authenticate(connection.headers)
        cast(dict[str, Any], connection.scope)["tasker_principal"] = principal.subject
        if not principal.may(permission):
            raise PermissionDeniedException(f"this operation needs the {permission!r} permission")

    return guard
