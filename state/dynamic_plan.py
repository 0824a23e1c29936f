"""Which template steps exist in a task, and which to create next (pure; no database).

A task starts with only the steps that do not wait on a runtime choice. Every other step is
created later, when it is *determined*:
- a child of a `decision` step exists iff the decision chose it;
- a `batch_worker` step exists (as instances `{name}_001...`) once its `batchable` parent
  completed with an outcome;
- a `deferred_convergence` step waits until every declared dependency is determined, then
  exists iff at least one of them exists, depending on exactly those (intersection);
- any other step exists once all its dependencies exist, and never if one of them never will.

`plan_steps` computes this fixpoint over the template in topological order, so the same
function yields the initial steps (nothing decided yet) and, after each outcome, the steps
that outcome makes determined.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Mapping, Set
from functools import cached_property

from tasker.state.template_model import StepDefinition, TaskTemplate


class Fate(enum.Enum):
    """What the plan knows about a template step in one task."""

    EXISTS = "exists"
    PRUNED = "pruned"  # will never be created
    WAITING = "waiting"  # depends on a choice not made yet


class TemplateGraph:
    """A template's steps indexed by name, with children and a topological order.

    `TaskTemplate.step` and `.children` scan every step; planning over a 5,000-step
    template needs them in constant time, so they are computed once here.
    """

    def __init__(self, template: TaskTemplate) -> None:
        self.template = template
        self.steps = {step.name: step for step in template.steps}
        self.position = {step.name: index for index, step in enumerate(template.steps)}
        children: dict[str, list[str]] = {name: [] for name in self.steps}
        for step in template.steps:
            for parent in step.dependencies:
                children[parent].append(step.name)
        self.children = children

    def step(self, name: str) -> StepDefinition:
        return self.steps[name]

    @cached_property
    def order(self) -> tuple[str, ...]:
        """Step names, each after its dependencies; earliest declared first among peers."""
        waiting = {name: len(step.dependencies) for name, step in self.steps.items()}
        ready = [self.position[name] for name, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            name = self.template.steps[heapq.heappop(ready)].name
            order.append(name)
            for child in self.children[name]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    heapq.heappush(ready, self.position[child])
        return tuple(order)


_GRAPHS: dict[int, TemplateGraph] = {}
_MAX_GRAPHS = 256


def graph_of(template: TaskTemplate) -> TemplateGraph:
    """The (cached) graph of `template`; the cache holds the template, so ids stay unique."""
    graph = _GRAPHS.get(id(template))
    if graph is None or graph.template is not template:
        if len(_GRAPHS) >= _MAX_GRAPHS:
            _GRAPHS.pop(next(iter(_GRAPHS)))
        graph = _GRAPHS[id(template)] = TemplateGraph(template)
    return graph


def plan_steps(
    graph: TemplateGraph,
    existing: Set[str],
    decided: Mapping[str, Set[str]],
    batched: Set[str],
) -> list[str]:
    """Template steps to create now, in topological order.

    `existing`: template step names with rows already; `decided`: completed decision steps
    and the children each chose; `batched`: completed batchable steps (their outcome is
    known).
    """
    fates: dict[str, Fate] = {}
    created: list[str] = []
    for name in graph.order:
        if name in existing:
            fates[name] = Fate.EXISTS
            continue
        fate = _fate(graph, graph.step(name), fates, decided, batched)
        fates[name] = fate
        if fate is Fate.EXISTS:
            created.append(name)
    return created


def effective_parents(graph: TemplateGraph, name: str, exists: Set[str]) -> tuple[str, ...]:
    """The dependencies a newly created step gets edges from.

    All of them, except for a deferred convergence step: the ones that exist.
    """
    step = graph.step(name)
    if step.type == "deferred_convergence":
        return tuple(d for d in step.dependencies if d in exists)
    return step.dependencies


def gating_batchable(graph: TemplateGraph, worker: StepDefinition) -> str | None:
    """The batchable parent whose outcome creates this batch worker's instances, if any."""
    if worker.type != "batch_worker":
        return None
    for parent in worker.dependencies:
        step = graph.step(parent)
        config = step.batch_config
        if (
            step.type == "batchable"
            and config is not None
            and config.worker_template in (None, worker.name)
        ):
            return parent
    return None


def decision_children(graph: TemplateGraph, decision: str) -> tuple[str, ...]:
    """The steps a decision may choose: its declared children that are not convergences."""
    return tuple(
        child
        for child in graph.children[decision]
        if graph.step(child).type != "deferred_convergence"
    )


def _fate(
    graph: TemplateGraph,
    step: StepDefinition,
    fates: Mapping[str, Fate],
    decided: Mapping[str, Set[str]],
    batched: Set[str],
) -> Fate:
    parents = [fates[d] for d in step.dependencies]
    if step.type == "deferred_convergence":
        if Fate.WAITING in parents:
            return Fate.WAITING
        return Fate.EXISTS if Fate.EXISTS in parents else Fate.PRUNED
    if Fate.PRUNED in parents:
        return Fate.PRUNED
    if Fate.WAITING in parents:
        return Fate.WAITING
    return _gate(graph, step, decided, batched)


def _gate(
    graph: TemplateGraph,
    step: StepDefinition,
    decided: Mapping[str, Set[str]],
    batched: Set[str],
) -> Fate:
    """Every parent exists; the step still waits on each decision parent's choice."""
    for parent in step.dependencies:
        if graph.step(parent).type != "decision":
            continue
        if parent not in decided:
            return Fate.WAITING
        if step.name not in decided[parent]:
            return Fate.PRUNED
    batchable = gating_batchable(graph, step)
    if batchable is not None and batchable not in batched:
        return Fate.WAITING
    return Fate.EXISTS
