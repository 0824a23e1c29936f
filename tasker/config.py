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
    sweep_interval_seconds: float = 5.0
    republish_after_seconds: float = 60.0
    max_context_bytes: int = 1_048_576
    api_bind: str = "127.0.0.1:8080"
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "text"

    def __post_init__(self) -> None:
        _require_positive(self, "concurrency", "visibility_timeout_seconds")
        _require_positive(self, "poll_interval_seconds", "max_deliveries", "batch_size")
        _require_positive(self, "default_max_attempts", "database_pool_size")
        _require_positive(self, "worker_heartbeat_seconds")
        if not 0.0 <= self.backoff_jitter <= 1.0:
            raise ConfigError("backoff_jitter", "must be between 0.0 and 1.0")


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


_LIST_FIELDS = {"namespaces", "handlers", "compat"}


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
