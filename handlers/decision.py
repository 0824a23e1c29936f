"""Decision steps: a handler that chooses which of its declared child steps to create.

    class RouteOrder(DecisionHandler):
        handler_name = "orders.route"

        def call(self, context):
            if context.get_input("amount") < 1000:
                return self.decision_success(["auto_approve"])
            return self.decision_success(["manager_approval", "finance_review"])

The result carries `decision_point_outcome` (`{"type": "create_steps", "step_names": [...]}`
or `{"type": "no_branches", ...}`), Tasker's format; the orchestrator creates the chosen
steps when it applies the result. Choosing a step the template does not declare as a child
of the decision fails the step permanently, naming the allowed ones.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tasker.handlers.base import StepHandler
from tasker.handlers.result import StepHandlerResult

DECISION_KEY = "decision_point_outcome"


class DecisionType(enum.StrEnum):
    """What a decision decided."""

    CREATE_STEPS = "create_steps"
    NO_BRANCHES = "no_branches"


@dataclass(frozen=True)
class DecisionPointOutcome:
    """A decision: the steps to create (none for `no_branches`) and why."""

    decision_type: DecisionType
    next_step_names: list[str] = field(default_factory=list)
    routing_context: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    dynamic_steps: list[dict[str, Any]] | None = None

    @classmethod
    def create_steps(
        cls,
        step_names: Sequence[str],
        routing_context: dict[str, Any] | None = None,
        dynamic_steps: list[dict[str, Any]] | None = None,
    ) -> DecisionPointOutcome:
        """Create these declared child steps."""
        return cls(
            DecisionType.CREATE_STEPS,
            list(step_names),
            routing_context or {},
            dynamic_steps=dynamic_steps,
        )

    @classmethod
    def no_branches(
        cls, reason: str | None = None, routing_context: dict[str, Any] | None = None
    ) -> DecisionPointOutcome:
        """Create none of the child steps."""
        return cls(DecisionType.NO_BRANCHES, [], routing_context or {}, reason)

    def to_dict(self) -> dict[str, Any]:
        """The `decision_point_outcome` value the orchestrator reads."""
        return {"type": str(self.decision_type), "step_names": list(self.next_step_names)}


class DecisionMixin:
    """Result helpers for decision handlers (Tasker's names); mix into a StepHandler."""

    def decision_success_with_outcome(
        self, outcome: DecisionPointOutcome, metadata: dict[str, Any] | None = None
    ) -> StepHandlerResult:
        """Success carrying `outcome`."""
        result: dict[str, Any] = {DECISION_KEY: outcome.to_dict()}
        if outcome.routing_context:
            result["routing_context"] = outcome.routing_context
        if outcome.reason is not None:
            result["reason"] = outcome.reason
        if outcome.dynamic_steps:
            result["dynamic_steps"] = outcome.dynamic_steps
        return StepHandlerResult.success(result, self._decision_metadata(metadata))

    def decision_success(
        self,
        steps: Sequence[str],
        routing_context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> StepHandlerResult:
        """Create these declared child steps (no steps means no branches)."""
        if not steps:
            return self.decision_no_branches(None, routing_context, metadata)
        outcome = DecisionPointOutcome.create_steps(steps, routing_context)
        return self.decision_success_with_outcome(outcome, metadata)

    def route_to_steps(
        self,
        step_names: Sequence[str],
        routing_context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> StepHandlerResult:
        """Alias of `decision_success`."""
        return self.decision_success(step_names, routing_context, metadata)

    def decision_no_branches(
        self,
        reason: str | None = None,
        routing_context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> StepHandlerResult:
        """Create none of the child steps."""
        outcome = DecisionPointOutcome.no_branches(reason, routing_context)
        return self.decision_success_with_outcome(outcome, metadata)

    def skip_branches(
        self,
        reason: str,
        routing_context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> StepHandlerResult:
        """Alias of `decision_no_branches` with a reason."""
        return self.decision_no_branches(reason, routing_context, metadata)

    def decision_failure(
        self,
        message: str,
        error_type: str = "decision_error",
        retryable: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> StepHandlerResult:
        """The decision could not be made (not retryable unless said so)."""
        return StepHandlerResult.failure(
            message, error_type, retryable, self._decision_metadata(metadata)
        )

    def _decision_metadata(self, metadata: dict[str, Any] | None) -> dict[str, Any]:
        return {
            **(metadata or {}),
            "decision_handler": getattr(self, "handler_name", "") or type(self).__name__,
            "decision_version": getattr(self, "handler_version", "1.0.0"),
        }


class DecisionHandler(StepHandler, DecisionMixin):
    """Base class of class-style decision handlers."""

    capabilities: tuple[str, ...] = ("process", "decision", "routing")


class Decision:
    """What a `@decision_handler` function returns: `Decision.route([...])` or `.skip(why)`."""

    @staticmethod
    def route(steps: Sequence[str], **routing_context: Any) -> DecisionPointOutcome:
        """Create these declared child steps."""
        return DecisionPointOutcome.create_steps(steps, routing_context)

    @staticmethod
    def skip(reason: str, **routing_context: Any) -> DecisionPointOutcome:
        """Create none of the child steps."""
        return DecisionPointOutcome.no_branches(reason, routing_context)
