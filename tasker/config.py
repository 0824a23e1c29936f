"""Process configuration: one frozen, typed struct per process.

Sources, lowest precedence first: defaults, a TOML file (`--config` or `TASKER_CONFIG`),
`TASKER_*` environment variables, then CLI flags. An invalid setting fails at start with a
message that names it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

ENV_PREFIX = "TASKER_"


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every setting a Tasker process reads. Field `x` is env `TASKER_X`, TOML key `x`."""

    database_url: str = "postgresql://127.0.0.1:5432/postgres"
    broker: Literal["pgmq", "rabbitmq", "memory"] = "pgmq"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    template_path: str | None = None
    env: str = "development"
    # Worker
    namespaces: tuple[str, ...] = ("default",)
    handlers: tuple[str, ...] = ()
    concurrency: int = msgspec.field(default=4)
    shutdown_grace_seconds: float = 30.0
    # How often a worker announces itself (the orchestrator records it in tasker.workers).
    worker_heartbeat_seconds: float = 5.0
    # How long a worker that stopped or went silent stays in tasker.workers (the
    # orchestrator prunes older rows hourly).
    worker_retention_hours: float = 24.0
    # host:port of the worker's own health endpoint (/health/live, /health/ready) for
    # container probes; None = not served.
    worker_health_bind: str | None = None
    # Compatibility layers the worker enables ("tasker-core": import tasker_core handlers).
    compat: tuple[str, ...] = ()
    # Messaging
    visibility_timeout_seconds: float = 30.0
    poll_interval_seconds: float = 1.0
    max_deliveries: int = 5
    batch_size: int = 16
    # Retries (template `retry` blocks override these per step)
    default_max_attempts: int = 3
    default_backoff: Literal["exponential", "linear", "fibonacci", "none"] = "exponential"
    default_backoff_base_ms: int = 1000
    default_max_backoff_ms: int = 30000
    backoff_jitter: float = 0.1
    # Orchestrator
    database_pool_size: int = 8
    # Result processors fed by the results queue's pump: results are applied this many
    # transactions at a time (a task's row lock orders those of one task).
    result_processors: int = 2
    sweep_interval_seconds: float = 5.0
    republish_after_seconds: float = 60.0
    max_context_bytes: int = 1_048_576
    # Staleness: a task stuck this long in one state goes to error and the DLQ
    # (a template's `lifecycle` block overrides these per template).
    stale_waiting_for_dependencies_minutes: float = 60.0
    stale_waiting_for_retry_minutes: float = 30.0
    stale_steps_in_process_minutes: float = 30.0
    # Circuit breakers around the database and the broker
    circuit_failure_threshold: int = 5
    circuit_reset_timeout_seconds: float = 10.0
    # Backpressure: refuse new tasks (503 + Retry-After) while a step queue is this deep
    backpressure_queue_depth: int = 10_000
    backpressure_retry_after_seconds: int = 5
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "text"
    # REST API, served by the orchestrator process
    api_enabled: bool = True
    api_bind: str = "127.0.0.1:8080"
    api_max_wait_seconds: float = 60.0  # longest long-poll a client may ask for
    # API auth (off unless enabled). `api_keys` entries: "KEY=perm perm" or "KEY=*".
    auth_enabled: bool = False
    api_keys: tuple[str, ...] = ()
    jwt_secret: str | None = None  # HS* shared secret
    jwt_public_key: str | None = None  # RS*/ES* PEM text
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Clients (the CLI): where the API is (default http://{api_bind}) and credentials.
    api_url: str | None = None
    api_key: str | None = None
    api_token: str | None = None
    # Telemetry: traces go to OTLP/HTTP when `otel_exporter` is "otlp" (endpoint from
    # `otel_endpoint` or OTEL_EXPORTER_OTLP_ENDPOINT); metrics are served on /metrics.
    otel_exporter: Literal["none", "otlp", "console"] = "none"
    otel_endpoint: str | None = None
    otel_service_name: str = "tasker"
    # Domain events (`publishes_events`) also go to this queue, durably ("" = off).
    events_queue: str = "tasker_domain_events"

    def __post_init__(self) -> None:
        _require_positive(self, "concurrency", "visibility_timeout_seconds")
        _require_positive(self, "poll_interval_seconds", "max_deliveries", "batch_size")
        _require_positive(self, "default_max_attempts", "database_pool_size", "result_processors")
        _require_positive(self, "worker_heartbeat_seconds", "worker_retention_hours")
        if not 0.0 <= self.backoff_jitter <= 1.0:
            raise ConfigError("backoff_jitter", "must be between 0.0 and 1.0")
        _require_positive(self, "api_max_wait_seconds")
        api_host_port(self.api_bind)
        if self.worker_health_bind is not None:
            host_port(self.worker_health_bind, setting="worker_health_bind")

    @property
    def client_api_url(self) -> str:
        """The API's base URL as clients use it."""
        if self.api_url:
            return self.api_url.rstrip("/")
        host, port = api_host_port(self.api_bind)
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


#: Settings whose values are secrets: never logged, shown redacted.
SECRET_SETTINGS = frozenset({"api_keys", "jwt_secret", "api_key", "api_token"})


def api_host_port(bind: str) -> tuple[str, int]:
    """`host:port` of `api_bind`, checked."""
    return host_port(bind, setting="api_bind")


def host_port(bind: str, *, setting: str) -> tuple[str, int]:
    """`host:port` of a bind setting, checked (an empty host means 127.0.0.1)."""
    host, _, port = bind.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(setting, f"expected host:port, got {bind!r}")
    return host or "127.0.0.1", int(port)


def redacted(config: Config) -> dict[str, Any]:
    """The settings as a dict, safe to show: secrets masked, URL passwords removed."""
    shown: dict[str, Any] = {}
    for name, value in msgspec.structs.asdict(config).items():
        if name in SECRET_SETTINGS and value:
            shown[name] = "***" if isinstance(value, str) else [_mask_key(v) for v in value]
        elif isinstance(value, str) and "://" in value and "@" in value:
            shown[name] = _strip_password(value)
        else:
            shown[name] = list(value) if isinstance(value, tuple) else value
    return shown


def _mask_key(entry: str) -> str:
    _, _, permissions = entry.partition("=")
    return f"***={permissions}"


def _strip_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in userinfo else url


class ConfigError(ValueError):
    """A setting is invalid; the message names it and says what is expected."""

    def __init__(self, setting: str, problem: str) -> None:
        env_name = ENV_PREFIX + setting.upper()
        super().__init__(f"invalid setting {setting!r} (env {env_name}): {problem}")
        self.setting = setting


def _require_positive(config: Config, *names: str) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise ConfigError(name, f"must be positive, got {getattr(config, name)!r}")


_LIST_FIELDS = {"namespaces", "handlers", "compat", "api_keys", "jwt_algorithms"}


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings given as TASKER_* variables; comma-separated values for list settings."""
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(Config):
        raw = environ.get(ENV_PREFIX + field.name.upper())
        if raw is None:
            continue
        values[field.name] = _split_list(raw) if field.name in _LIST_FIELDS else raw
    return values


def _split_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError("config", f"file {str(path)!r} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"file {str(path)!r} is not valid TOML: {exc}") from exc


def load_config(
    *,
    config_file: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the process config from file, environment and CLI overrides (in that order)."""
    environ = os.environ if environ is None else environ
    path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    merged: dict[str, Any] = _from_toml(Path(path)) if path else {}
    merged.update(_from_environment(environ))
    merged.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return _convert(merged)


def _convert(values: dict[str, Any]) -> Config:
    try:
        return msgspec.convert(values, Config, strict=False)
    except msgspec.ValidationError as exc:
        if isinstance(exc.__cause__, ConfigError):  # raised by Config.__post_init__
            raise exc.__cause__ from None
        raise ConfigError(_setting_in(str(exc)), str(exc)) from exc


def _setting_in(message: str) -> str:
    """The setting a msgspec validation message points at (`... at `$.name``)."""
    marker = "`$."
    if marker in message:
        return message.split(marker, 1)[1].split("`", 1)[0].split("[", 1)[0]
    if "unknown field" in message:
        return message.split("`", 2)[1]
    return "config"


def with_overrides(config: Config, **changes: Any) -> Config:
    """A copy of `config` with some settings replaced (and validated again)."""
    return _convert({**msgspec.structs.asdict(config), **changes})
