"""Task templates: the import point for the model, the YAML loader, validation and JSON.

    from tasker.state.templates import load_template_file, TemplateError

Templates are stored in PostgreSQL as JSON (`template_to_json`); reading one back
(`template_from_json`) checks it again, so a stored template is always a valid one.
"""

from __future__ import annotations

import msgspec

from tasker.state.template_environments import ALL_STEPS, apply_environment
from tasker.state.template_loader import (
    load_template_directory,
    load_template_file,
    load_template_text,
    template_from_mapping,
)
from tasker.state.template_model import (
    Backoff,
    BatchConfig,
    EnvironmentOverrides,
    FailureStrategy,
    HandlerDefinition,
    HandlerOverride,
    RetryPolicy,
    StepDefinition,
    StepOverride,
    StepType,
    TaskTemplate,
)
from tasker.state.template_validation import (
    TemplateError,
    TemplateProblem,
    check_template,
    find_cycles,
    validate_template,
)

__all__ = [
    "ALL_STEPS",
    "Backoff",
    "BatchConfig",
    "EnvironmentOverrides",
    "FailureStrategy",
    "HandlerDefinition",
    "HandlerOverride",
    "RetryPolicy",
    "StepDefinition",
    "StepOverride",
    "StepType",
    "TaskTemplate",
    "TemplateError",
    "TemplateProblem",
    "apply_environment",
    "check_template",
    "find_cycles",
    "load_template_directory",
    "load_template_file",
    "load_template_text",
    "template_from_json",
    "template_from_mapping",
    "template_to_json",
    "validate_template",
]

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()


def template_to_json(template: TaskTemplate) -> bytes:
    """The template as JSON bytes, for a PostgreSQL `jsonb` column."""
    return _ENCODER.encode(template)


def template_from_json(data: bytes | str, *, source: str = "<json>") -> TaskTemplate:
    """A template from `template_to_json` output, checked again; TemplateError if invalid."""
    try:
        document = _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        problem = TemplateProblem(source, None, None, f"invalid JSON: {exc}")
        raise TemplateError([problem]) from exc
    return template_from_mapping(document, source=source)
