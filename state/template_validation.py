"""Rules a task template must satisfy beyond its field types, and the error that reports them.

Every rule returns problems instead of raising, so one run reports everything wrong with
a file. Each problem names the file, the step and the field, and says what to change.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import msgspec

from tasker.state.template_environments import ALL_STEPS
from tasker.state.template_model import StepDefinition, TaskTemplate

_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?$")


class TemplateProblem(msgspec.Struct, frozen=True):
    """One thing wrong with a template: where (file, step, field) and what."""

    source: str
    step: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        parts = [self.source]
        if self.step is not None:
            parts.append(f"step {self.step!r}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return ": ".join([*parts, self.message])


class TemplateError(ValueError):
    """A template (or a directory of them) is invalid; lists every problem found.

    `source`, `step` and `field` describe the first problem; `problems` holds them all.
    """

    def __init__(self, problems: Sequence[TemplateProblem]) -> None:
        if not problems:
            raise ValueError("TemplateError needs at least one problem")
        self.problems = tuple(problems)
        first = self.problems[0]
        self.source, self.step, self.field = first.source, first.step, first.field
        if len(self.problems) == 1:
            super().__init__(str(first))
        else:
            listing = "\n".join(f"  - {problem}" for problem in self.problems)
            super().__init__(f"{len(self.problems)} problems in task templates:\n{listing}")


def check_template(template: TaskTemplate, source: str) -> list[TemplateProblem]:
    """Every rule violation in `template` (empty when it is valid)."""
    problems = list(_check_header(template, source))
    if not template.steps:
        problems.append(
            TemplateProblem(source, None, "steps", "a template needs at least one step")
        )
        return problems
    problems.extend(_check_unique_names(template, source))
    for step in template.steps:
        problems.extend(_check_step(template, step, source))
    problems.extend(_check_cycles(template, source))
    problems.extend(_check_environments(template, source))
    return problems


def validate_template(template: TaskTemplate, source: str = "<template>") -> TaskTemplate:
    """`template` itself if it is valid; otherwise TemplateError listing every problem."""
    problems = check_template(template, source)
    if problems:
        raise TemplateError(problems)
    return template


def _check_header(template: TaskTemplate, source: str) -> Iterator[TemplateProblem]:
    for field in ("name", "namespace_name"):
        if not getattr(template, field).strip():
            yield TemplateProblem(source, None, field, "must not be empty")
    if not _VERSION.match(template.version):
        yield TemplateProblem(
            source,
            None,
            "version",
            f"expected a semantic version like 1.0.0, got {template.version!r}",
        )


def _check_unique_names(template: TaskTemplate, source: str) -> Iterator[TemplateProblem]:
    seen: set[str] = set()
    for index, step in enumerate(template.steps):
        if not step.name.strip():
            yield TemplateProblem(source, None, f"steps[{index}].name", "must not be empty")
        elif step.name in seen:
            yield TemplateProblem(
                source, step.name, "name", "duplicate step name; step names must be unique"
            )
        seen.add(step.name)


def _check_step(
    template: TaskTemplate, step: StepDefinition, source: str
) -> Iterator[TemplateProblem]:
    for field, message in _step_rules(template, step):
        yield TemplateProblem(source, step.name, field, message)


def _step_rules(template: TaskTemplate, step: StepDefinition) -> Iterator[tuple[str, str]]:
    if not step.handler.callable.strip():
        yield "handler.callable", "must name a handler"
    yield from _dependency_rules(template, step)
    yield from _retry_rules(step)
    if step.timeout_seconds is not None and step.timeout_seconds <= 0:
        yield "timeout_seconds", f"must be positive, got {step.timeout_seconds!r}"
    yield from _type_rules(template, step)


def _dependency_rules(template: TaskTemplate, step: StepDefinition) -> Iterator[tuple[str, str]]:
    known = set(template.step_names)
    for dependency in step.dependencies:
        if dependency == step.name:
            yield "dependencies", "a step cannot depend on itself; remove it from its dependencies"
        elif dependency not in known:
            steps = ", ".join(dict.fromkeys(template.step_names))
            yield (
                "dependencies",
                f"depends on unknown step {dependency!r}; the steps are: {steps}",
            )


def _retry_rules(step: StepDefinition) -> Iterator[tuple[str, str]]:
    retry = step.retry
    if retry.max_attempts is not None and retry.max_attempts < 1:
        yield "retry.max_attempts", f"must be at least 1, got {retry.max_attempts}"
    for field in ("backoff_base_ms", "max_backoff_ms"):
        value = getattr(retry, field)
        if value is not None and value < 0:
            yield f"retry.{field}", f"must not be negative, got {value}"
    base, ceiling = retry.backoff_base_ms, retry.max_backoff_ms
    if base is not None and ceiling is not None and 0 <= ceiling < base:
        yield "retry.max_backoff_ms", f"must be at least backoff_base_ms ({base}), got {ceiling}"


def _type_rules(template: TaskTemplate, step: StepDefinition) -> Iterator[tuple[str, str]]:
    if step.type == "decision" and not step.dependencies:
        yield "dependencies", "a decision step needs at least one dependency to decide on"
    if step.type in ("batchable", "batch_worker") and step.batch_config is None:
        yield "batch_config", f"a {step.type} step needs a batch_config"
    if step.batch_config is not None:
        yield from _batch_rules(template, step)


def _batch_rules(template: TaskTemplate, step: StepDefinition) -> Iterator[tuple[str, str]]:
    config = step.batch_config
    assert config is not None
    for field in ("batch_size", "parallelism"):
        if getattr(config, field) < 1:
            yield f"batch_config.{field}", f"must be at least 1, got {getattr(config, field)}"
    if step.type != "batchable":
        return
    workers = [other.name for other in template.steps if other.type == "batch_worker"]
    if config.worker_template not in workers:
        choices = ", ".join(workers) or "none in this template"
        yield (
            "batch_config.worker_template",
            f"must name a batch_worker step (batch_worker steps: {choices}), "
            f"got {config.worker_template!r}",
        )


def _check_cycles(template: TaskTemplate, source: str) -> Iterator[TemplateProblem]:
    for cycle in find_cycles(template):
        path = " -> ".join(cycle)
        yield TemplateProblem(
            source,
            cycle[0],
            "dependencies",
            f"dependency cycle {path} (X -> Y means X depends on Y); "
            "remove one of these dependencies",
        )


def find_cycles(template: TaskTemplate) -> list[list[str]]:
    """Dependency cycles, each as a closed path [a, b, ..., a] where a depends on b.

    Self-dependencies and unknown steps are left to their own rules. Deterministic: the
    search follows declaration order.
    """
    graph: dict[str, list[str]] = {}
    for step in template.steps:
        graph.setdefault(step.name, [])
    for step in template.steps:
        graph[step.name].extend(d for d in step.dependencies if d in graph and d != step.name)
    return _CycleSearch(graph).run()


class _CycleSearch:
    """Depth-first search that records the path to every back edge it meets."""

    def __init__(self, graph: dict[str, list[str]]) -> None:
        self.graph = graph
        self.done: set[str] = set()
        self.path: list[str] = []
        self.on_path: set[str] = set()
        self.cycles: list[list[str]] = []

    def run(self) -> list[list[str]]:
        for node in self.graph:
            if node not in self.done:
                self._visit(node)
        return self.cycles

    def _visit(self, root: str) -> None:
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(self.graph[root]))]
        self._enter(root)
        while stack:
            node, edges = stack[-1]
            target = next(edges, None)
            if target is None:
                stack.pop()
                self._leave(node)
            elif target in self.on_path:
                self.cycles.append([*self.path[self.path.index(target) :], target])
            elif target not in self.done:
                self._enter(target)
                stack.append((target, iter(self.graph[target])))

    def _enter(self, node: str) -> None:
        self.path.append(node)
        self.on_path.add(node)

    def _leave(self, node: str) -> None:
        self.path.pop()
        self.on_path.discard(node)
        self.done.add(node)


def _check_environments(template: TaskTemplate, source: str) -> Iterator[TemplateProblem]:
    known = set(template.step_names) | {ALL_STEPS}
    for env, overrides in template.environments.items():
        for index, override in enumerate(overrides.steps):
            if override.name not in known:
                yield TemplateProblem(
                    source,
                    None,
                    f"environments.{env}.steps[{index}].name",
                    f"names unknown step {override.name!r}; use a step name or {ALL_STEPS}",
                )
