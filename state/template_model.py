"""Task template model: frozen msgspec structs for Tasker's YAML template format.

A template is a DAG of steps. Structs here only describe shape and types; the rules that
span fields (unique names, known dependencies, no cycles...) live in `template_validation`.
"""

from __future__ import annotations

import heapq
from typing import Any, Literal

import msgspec

StepType = Literal["standard", "decision", "deferred_convergence", "batchable", "batch_worker"]
Backoff = Literal["exponential", "linear", "fibonacci", "none"]
FailureStrategy = Literal["continue_on_failure", "fail_fast", "isolate"]
#: How duplicate task requests are recognised: `strict` (same template and context),
#: `caller_provided` (same idempotency_key) or `always_unique` (never).
IdentityStrategy = Literal["strict", "caller_provided", "always_unique"]


class HandlerDefinition(msgspec.Struct, frozen=True):
    """Which handler runs a step: `callable` is a registry key (the handler's name)."""

    callable: str
    method: str = "call"
    resolver: str | None = None
    initialization: dict[str, Any] = msgspec.field(default_factory=dict)


class RetryPolicy(msgspec.Struct, frozen=True):
    """Per-step retry settings; a `None` field means "use the global default from config"."""

    retryable: bool = True
    max_attempts: int | None = None
    backoff: Backoff | None = None
    backoff_base_ms: int | None = None
    max_backoff_ms: int | None = None

    def resolved(
        self,
        default_max_attempts: int,
        default_backoff: Backoff,
        default_backoff_base_ms: int,
        default_max_backoff_ms: int,
    ) -> RetryPolicy:
        """A copy with every unset field filled from the given defaults."""
        return RetryPolicy(
            retryable=self.retryable,
            max_attempts=_or(self.max_attempts, default_max_attempts),
            backoff=default_backoff if self.backoff is None else self.backoff,
            backoff_base_ms=_or(self.backoff_base_ms, default_backoff_base_ms),
            max_backoff_ms=_or(self.max_backoff_ms, default_max_backoff_ms),
        )


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


class BatchConfig(msgspec.Struct, frozen=True):
    """How a `batchable` step splits its input among `batch_worker` steps."""

    batch_size: int = 100
    parallelism: int = 1
    cursor_field: str | None = None
    worker_template: str | None = None
    failure_strategy: FailureStrategy = "continue_on_failure"


class StepDefinition(msgspec.Struct, frozen=True):
    """One step of a template. YAML may spell `dependencies` as `depends_on`."""

    name: str
    handler: HandlerDefinition
    description: str = ""
    dependencies: tuple[str, ...] = ()
    type: StepType = "standard"
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
    timeout_seconds: float | None = None
    publishes_events: tuple[str | dict[str, Any], ...] = ()
    batch_config: BatchConfig | None = None


class HandlerOverride(msgspec.Struct, frozen=True):
    """The part of a handler an environment may change: its initialization (merged)."""

    initialization: dict[str, Any] = msgspec.field(default_factory=dict)


class StepOverride(msgspec.Struct, frozen=True):
    """Per-environment changes to the step called `name` (or to every step, for `ALL`)."""

    name: str
    timeout_seconds: float | None = None
    retry: dict[str, Any] = msgspec.field(default_factory=dict)
    handler: HandlerOverride | None = None


class EnvironmentOverrides(msgspec.Struct, frozen=True):
    """The `environments.<env>` block of a template."""

    steps: tuple[StepOverride, ...] = ()


class TaskTemplate(msgspec.Struct, frozen=True):
    """A named, versioned workflow: a DAG of steps, registered by (namespace, name, version)."""

    name: str
    namespace_name: str
    version: str
    steps: tuple[StepDefinition, ...]
    description: str = ""
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    input_schema: dict[str, Any] | None = None
    environments: dict[str, EnvironmentOverrides] = msgspec.field(default_factory=dict)
    lifecycle: dict[str, Any] = msgspec.field(default_factory=dict)
    domain_events: tuple[Any, ...] = ()
    system_dependencies: dict[str, Any] = msgspec.field(default_factory=dict)
    identity_strategy: IdentityStrategy = "always_unique"

    @property
    def identity(self) -> str:
        """`namespace/name@version`, the key a template is registered under."""
        return f"{self.namespace_name}/{self.name}@{self.version}"

    @property
    def step_names(self) -> tuple[str, ...]:
        """Step names in declaration order."""
        return tuple(step.name for step in self.steps)

    def step(self, name: str) -> StepDefinition:
        """The step called `name`; KeyError naming the template's steps if there is none."""
        for step in self.steps:
            if step.name == name:
                return step
        known = ", ".join(self.step_names)
        raise KeyError(f"template {self.identity} has no step {name!r} (steps: {known})")

    def parents(self, name: str) -> tuple[str, ...]:
        """The steps `name` depends on, as declared."""
        return self.step(name).dependencies

    def children(self, name: str) -> tuple[str, ...]:
        """The steps that depend on `name`, in declaration order."""
        self.step(name)
        return tuple(step.name for step in self.steps if name in step.dependencies)

    def topological_order(self) -> tuple[str, ...]:
        """Step names with every step after its dependencies.

        Stable: among the steps ready at any point, the earliest declared comes first.
        Assumes a validated template (no cycles, no unknown dependencies).
        """
        position = {name: index for index, name in enumerate(self.step_names)}
        waiting = {step.name: set(step.dependencies) for step in self.steps}
        ready = [position[name] for name, deps in waiting.items() if not deps]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            name = self.steps[heapq.heappop(ready)].name
            order.append(name)
            for child in self.children(name):
                waiting[child].discard(name)
                if not waiting[child]:
                    heapq.heappush(ready, position[child])
        return tuple(order)
