"""Handlers of the conditional approval example: a decision routes by amount.

Under $1,000 the request is auto-approved; under $5,000 a manager approves it; from $5,000
a manager and finance both do. `finalize_approval` is a deferred convergence step: it waits
for whichever approvals the decision created, and only for those.
"""

from __future__ import annotations

from typing import Any

from tasker.handlers import DecisionHandler, StepContext, StepHandler, StepHandlerResult

SMALL_AMOUNT = 1_000
LARGE_AMOUNT = 5_000
APPROVAL_STEPS = ("auto_approve", "manager_approval", "finance_review")


def route_for(amount: float) -> tuple[str, list[str]]:
    """The route type and the approval steps an amount needs."""
    if amount < SMALL_AMOUNT:
        return "auto_approval", ["auto_approve"]
    if amount < LARGE_AMOUNT:
        return "manager_only", ["manager_approval"]
    return "dual_approval", ["manager_approval", "finance_review"]


class ValidateRequest(StepHandler):
    handler_name = "examples.approval.validate_request"

    def call(self, context: StepContext) -> StepHandlerResult:
        amount = context.get_input("amount")
        if amount <= 0:
            return self.failure("amount must be positive", "validation_error", retryable=False)
        return self.success(
            {"validated": True, "amount": amount, "requester": context.get_input("requester")}
        )


class RoutingDecision(DecisionHandler):
    handler_name = "examples.approval.routing_decision"

    def call(self, context: StepContext) -> StepHandlerResult:
        amount = context.get_dependency_field("validate_request", "amount")
        route_type, steps = route_for(amount)
        return self.decision_success(
            steps, routing_context={"route_type": route_type, "amount": amount}
        )


class _Approval(StepHandler):
    approver = ""

    def call(self, context: StepContext) -> StepHandlerResult:
        amount = context.get_dependency_field("validate_request", "amount")
        return self.success({"approved": True, "approver": self.approver, "amount": amount})


class AutoApprove(_Approval):
    handler_name = "examples.approval.auto_approve"
    approver = "system"


class ManagerApproval(_Approval):
    handler_name = "examples.approval.manager_approval"
    approver = "manager"


class FinanceReview(_Approval):
    handler_name = "examples.approval.finance_review"
    approver = "finance"


class FinalizeApproval(StepHandler):
    handler_name = "examples.approval.finalize_approval"

    def call(self, context: StepContext) -> StepHandlerResult:
        approvals: list[dict[str, Any]] = [
            result
            for name in APPROVAL_STEPS
            if (result := context.get_dependency_result(name)) is not None
        ]
        route = context.get_dependency_field("routing_decision", "routing_context", "route_type")
        return self.success(
            {
                "approved": all(a["approved"] for a in approvals),
                "approvers": [a["approver"] for a in approvals],
                "route_type": route,
                "amount": context.get_dependency_field("validate_request", "amount"),
            }
        )
