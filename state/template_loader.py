"""Load task templates from YAML text, files and directories.

Loading is: parse YAML -> warn about unknown keys -> type-check the top level and each step
separately (so one file reports every bad step) -> apply `environments.<env>` overrides ->
check the template's rules. Any problem raises one TemplateError that lists them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar, get_args

import msgspec
import yaml

from tasker.state.template_environments import apply_environment
from tasker.state.template_model import (
    Backoff,
    EnvironmentOverrides,
    FailureStrategy,
    StepDefinition,
    StepType,
    TaskTemplate,
)
from tasker.state.template_unknown_keys import DEPENDENCIES_ALIAS, warn_unknown_keys
from tasker.state.template_validation import TemplateError, TemplateProblem, check_template

T = TypeVar("T")
TEMPLATE_SUFFIXES = (".yaml", ".yml")
_CHOICES: dict[str, tuple[str, ...]] = {
    "type": get_args(StepType),
    "backoff": get_args(Backoff),
    "failure_strategy": get_args(FailureStrategy),
}
_TYPE_NAMES = {"array": "list", "object": "mapping", "null": "nothing"}


# libyaml's C loader when present: the pure-Python one takes seconds on large templates.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_template_text(
    text: str, *, source: str = "<string>", env: str | None = None
) -> TaskTemplate:
    """Parse, check and return one template from YAML text; `source` names it in errors."""
    try:
        document = yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise TemplateError([TemplateProblem(source, None, None, f"invalid YAML: {exc}")]) from exc
    return template_from_mapping(document, source=source, env=env)


def load_template_file(path: str | Path, *, env: str | None = None) -> TaskTemplate:
    """Load one YAML template file (see `load_template_text`)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError([TemplateProblem(source, None, None, f"cannot read: {exc}")]) from exc
    return load_template_text(text, source=source, env=env)


def load_template_directory(path: str | Path, *, env: str | None = None) -> list[TaskTemplate]:
    """Every *.yaml / *.yml template under `path` (recursively), sorted by file name.

    Problems from all files, and templates defined twice (same namespace, name and
    version), are reported together in one TemplateError.
    """
    directory = Path(path)
    if not directory.is_dir():
        problem = TemplateProblem(str(directory), None, None, "is not a directory")
        raise TemplateError([problem])
    templates: list[TaskTemplate] = []
    problems: list[TemplateProblem] = []
    defined_in: dict[str, str] = {}
    for file in _template_files(directory):
        try:
            template = load_template_file(file, env=env)
        except TemplateError as exc:
            problems.extend(exc.problems)
            continue
        first = defined_in.setdefault(template.identity, str(file))
        if first != str(file):
            problems.append(_duplicate_template(template, str(file), first))
            continue
        templates.append(template)
    if problems:
        raise TemplateError(problems)
    return templates


def _template_files(directory: Path) -> list[Path]:
    files = (p for p in directory.rglob("*") if p.suffix in TEMPLATE_SUFFIXES and p.is_file())
    return sorted(files)


def _duplicate_template(template: TaskTemplate, source: str, first: str) -> TemplateProblem:
    message = (
        f"template {template.identity} is already defined in {first}; "
        "give one of them a different version or remove it"
    )
    return TemplateProblem(source, None, None, message)


def template_from_mapping(
    document: object, *, source: str = "<mapping>", env: str | None = None
) -> TaskTemplate:
    """Check and build a template from already-parsed data (YAML or JSON)."""
    if not isinstance(document, dict):
        kind = type(document).__name__
        problem = TemplateProblem(source, None, None, f"expected a mapping of fields, got {kind}")
        raise TemplateError([problem])
    warn_unknown_keys(document, source)
    header, problems = _convert_header(document, source)
    raw_steps, step_list_problems = _raw_steps(document, source)
    problems += step_list_problems
    if header is not None and env is not None:
        raw_steps = apply_environment(raw_steps, header.environments.get(env))
    steps: list[StepDefinition] = []
    for index, raw_step in enumerate(raw_steps):
        step, step_problems = _convert_step(raw_step, index, source)
        problems += step_problems
        if step is not None:
            steps.append(step)
    if problems or header is None:
        raise TemplateError(problems)
    template = msgspec.structs.replace(header, steps=tuple(steps))
    problems = check_template(template, source)
    if problems:
        raise TemplateError(problems)
    return template


# --- Type conversion, one part at a time ---------------------------------------------------


def _convert_header(
    document: dict[str, Any], source: str
) -> tuple[TaskTemplate | None, list[TemplateProblem]]:
    """The template without its steps (and with typed environments)."""
    fields = {**document, "steps": [], "environments": {}}
    if isinstance(fields.get("version"), int | float):
        # YAML reads an unquoted `1.0` as a number; as text, the version rule explains it.
        fields["version"] = str(fields["version"])
    header, problems = _convert(fields, TaskTemplate, source, step=None, prefix="")
    environments, env_problems = _convert_environments(document.get("environments"), source)
    problems += env_problems
    if header is None or env_problems:
        return None, problems
    return msgspec.structs.replace(header, environments=environments), problems


def _convert_environments(
    raw: object, source: str
) -> tuple[dict[str, EnvironmentOverrides], list[TemplateProblem]]:
    if raw is None:
        return {}, []
    if not isinstance(raw, dict):
        got = type(raw).__name__
        problem = TemplateProblem(source, None, "environments", f"expected mapping, got {got}")
        return {}, [problem]
    environments: dict[str, EnvironmentOverrides] = {}
    problems: list[TemplateProblem] = []
    for name, block in raw.items():
        prefix = f"environments.{name}"
        overrides, found = _convert(block, EnvironmentOverrides, source, None, prefix)
        problems += found
        if overrides is not None:
            environments[str(name)] = overrides
    return environments, problems


def _raw_steps(document: dict[str, Any], source: str) -> tuple[list[Any], list[TemplateProblem]]:
    if "steps" not in document:
        return [], [TemplateProblem(source, None, "steps", "missing required field")]
    steps = document["steps"]
    if not isinstance(steps, list):
        got = type(steps).__name__
        return [], [TemplateProblem(source, None, "steps", f"expected list of steps, got {got}")]
    return steps, []


def _convert_step(
    raw: object, index: int, source: str
) -> tuple[StepDefinition | None, list[TemplateProblem]]:
    name = _step_label(raw)
    if not isinstance(raw, dict):
        got = type(raw).__name__
        return None, [
            TemplateProblem(source, None, f"steps[{index}]", f"expected mapping, got {got}")
        ]
    fields, problems = _resolve_alias(raw, source, name)
    prefix = "" if name is not None else f"steps[{index}]"
    step, found = _convert(fields, StepDefinition, source, name, prefix)
    return step, problems + found


def _step_label(raw: object) -> str | None:
    name = raw.get("name") if isinstance(raw, dict) else None
    return name if isinstance(name, str) else None


def _resolve_alias(
    raw: dict[str, Any], source: str, step: str | None
) -> tuple[dict[str, Any], list[TemplateProblem]]:
    if DEPENDENCIES_ALIAS not in raw:
        return raw, []
    fields = {key: value for key, value in raw.items() if key != DEPENDENCIES_ALIAS}
    if "dependencies" in raw:
        message = "give either dependencies or depends_on, not both"
        return fields, [TemplateProblem(source, step, "dependencies", message)]
    fields["dependencies"] = raw[DEPENDENCIES_ALIAS]
    return fields, []


def _convert(
    fields: object, kind: type[T], source: str, step: str | None, prefix: str
) -> tuple[T | None, list[TemplateProblem]]:
    try:
        return msgspec.convert(fields, kind), []
    except msgspec.ValidationError as exc:
        path, message = describe_validation_error(str(exc))
        field = ".".join(part for part in (prefix, path) if part) or None
        return None, [TemplateProblem(source, step, field, message)]


def describe_validation_error(text: str) -> tuple[str, str]:
    """(field path, plain message) for a msgspec error message.

    "Expected `int | null`, got `str` - at `$.retry.max_attempts`" becomes
    ("retry.max_attempts", "expected int, got str").
    """
    body, _, location = text.partition(" - at `")
    path = location.rstrip("`").removeprefix("$").removeprefix(".")
    if body.startswith("Object missing required field `"):
        missing = body.split("`")[1]
        return ".".join(part for part in (path, missing) if part), "missing required field"
    if body.startswith("Invalid enum value"):
        choices = _CHOICES.get(path.rsplit(".", 1)[-1], ())
        value = body.removeprefix("Invalid enum value ")
        return path, f"invalid value {value}; expected one of: {', '.join(choices)}"
    if body.startswith("Expected `"):
        expected, got = body.split("`")[1], body.split("`")[3]
        return path, f"expected {_plain_type(expected)}, got {_plain_type(got)}"
    return path, body


def _plain_type(name: str) -> str:
    parts = [part for part in name.split(" | ") if part != "null"] or ["null"]
    return " or ".join(_TYPE_NAMES.get(part, part) for part in parts)
