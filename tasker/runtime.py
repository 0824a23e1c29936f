"""Process plumbing shared by the CLI's commands: logging and telemetry."""

from __future__ import annotations

import logging
import sys

import msgspec

from tasker.config import Config
from tasker.telemetry import logcontext


class _JsonFormatter(logging.Formatter):
    _encoder = msgspec.json.Encoder()

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "role": self.role,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            **getattr(record, "tasker_context", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self._encoder.encode(entry).decode()


class _TextFormatter(logging.Formatter):
    """Human-readable lines; the task/step ids follow the message in brackets."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = getattr(record, "tasker_context", {})
        shown = " ".join(f"{k}={v}" for k, v in ids.items() if k not in ("trace_id", "span_id"))
        return f"{line} [{shown}]" if shown else line


def configure_logging(config: Config, *, role: str) -> None:
    """Log to stderr, as JSON lines or human-readable text per `config.log_format`."""
    logcontext.install()
    handler = logging.StreamHandler(sys.stderr)
    if config.log_format == "json":
        handler.setFormatter(_JsonFormatter(role))
    else:
        handler.setFormatter(
            _TextFormatter(f"%(asctime)s %(levelname)s [{role}] %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log_level.upper())
    # uvicorn/httpx access logs would repeat every request (and could carry tokens in URLs).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def configure_telemetry(config: Config, *, role: str) -> None:
    """Logging plus traces (per `otel_exporter`) and, in the orchestrator, metrics."""
    from tasker.telemetry.tracing import configure_tracing

    configure_logging(config, role=role)
    configure_tracing(config, role=role)
