"""The rows and edges that create a task's determined steps (pure; no database).

`CreationPlan.build` turns the plan of `dynamic_plan` into step rows, edges and batch rows:
a batch worker becomes one instance per batch, each with its cursor as `inputs`; a step
after a batch worker depends on every instance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from tasker.ids import new_id
from tasker.state.dynamic_outcomes import (
    BatchOutcome,
    DecisionOutcome,
    OutcomeError,
    batch_outcome,
    chosen_steps,
)
from tasker.state.dynamic_plan import (
    TemplateGraph,
    effective_parents,
    gating_batchable,
    graph_of,
    plan_steps,
)
from tasker.state.dynamic_rows import RetryFill, batch_row, step_row, worker_inputs, worker_names
from tasker.state.template_model import BatchConfig, TaskTemplate


@dataclass
class TaskSteps:
    """A task's existing steps, as the plan reads them."""

    uuids: dict[str, list[UUID]] = field(default_factory=dict)  # by template step name
    decided: dict[str, frozenset[str]] = field(default_factory=dict)
    batch_results: dict[str, Any] = field(default_factory=dict)  # completed batchables

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]]) -> TaskSteps:
        """From `TASK_STEP_FATES` rows: (uuid, name, template step, type, state, outcome)."""
        steps = cls()
        for step_uuid, name, template_step, step_type, _state, results in rows:
            steps.uuids.setdefault(template_step, []).append(step_uuid)
            if results is None:
                continue
            if step_type == "decision":
                steps.decided[name] = frozenset(chosen_steps(results))
            elif step_type == "batchable":
                steps.batch_results[name] = results
        return steps


@dataclass
class CreationPlan:
    """What `add_dynamic_steps` (or `create_task`) inserts, as JSON-ready rows."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, str]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.steps

    @classmethod
    def build(
        cls,
        template: TaskTemplate,
        task: TaskSteps,
        fill: RetryFill,
        fresh: Mapping[str, DecisionOutcome | BatchOutcome | None] | None = None,
    ) -> CreationPlan:
        """The rows of every step `task`'s outcomes determined and that does not exist yet.

        `fresh` holds outcomes already parsed (the result being applied), by step name.
        """
        graph = graph_of(template)
        names = plan_steps(graph, task.uuids.keys(), task.decided, task.batch_results.keys())
        builder = _Builder(graph, fill, dict(task.uuids), task.batch_results, fresh or {})
        for name in names:
            builder.add(name)
        return builder.plan


class _Builder:
    def __init__(
        self,
        graph: TemplateGraph,
        fill: RetryFill,
        uuids: dict[str, list[UUID]],
        batch_results: Mapping[str, Any],
        fresh: Mapping[str, DecisionOutcome | BatchOutcome | None],
    ) -> None:
        self.graph = graph
        self.fill = fill
        self.uuids = uuids
        self.batch_results = batch_results
        self.fresh = fresh
        self.plan = CreationPlan()

    def add(self, name: str) -> None:
        step = self.graph.step(name)
        batchable = gating_batchable(self.graph, step)
        if batchable is None:
            new = [new_id()]
            self.plan.steps.append(step_row(step, self.graph.position[name], new[0], self.fill))
        else:
            new = self._add_instances(name, batchable)
        for parent in effective_parents(self.graph, name, self.uuids.keys()):
            self.plan.edges.extend(
                {"from_step_uuid": str(source), "to_step_uuid": str(target)}
                for source in self.uuids[parent]
                for target in new
            )
        self.uuids[name] = new

    def _add_instances(self, worker: str, batchable: str) -> list[UUID]:
        outcome = self._batch_outcome(batchable, worker)
        batch_uuid = self.uuids[batchable][0]
        step = self.graph.step(worker)
        position = self.graph.position[worker]
        new = []
        for name, inputs in zip(worker_names(worker, outcome), worker_inputs(outcome), strict=True):
            step_uuid = new_id()
            row = step_row(step, position, step_uuid, self.fill)
            row.update(name=name, template_step=worker, inputs=inputs)
            row["batch_step_uuid"] = str(batch_uuid)
            self.plan.steps.append(row)
            new.append(step_uuid)
        self.plan.batches.append(batch_row(batch_uuid, outcome))
        return new

    def _batch_outcome(self, batchable: str, worker: str) -> BatchOutcome:
        fresh = self.fresh.get(batchable)
        if isinstance(fresh, BatchOutcome):
            return fresh
        try:
            return batch_outcome(self.graph.template, batchable, self.batch_results[batchable])
        except OutcomeError:
            # A batchable completed by an operator may carry no outcome: no batches then.
            config = self.graph.step(worker).batch_config or BatchConfig()
            return BatchOutcome(worker, (), config)
