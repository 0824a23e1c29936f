"""Handlers of the diamond workflow: a start, two parallel branches, and a join."""

from __future__ import annotations

from tasker.handlers import StepContext, StepHandler, StepHandlerResult


class DiamondStart(StepHandler):
    handler_name = "examples.diamond.start"

    def call(self, context: StepContext) -> StepHandlerResult:
        return self.success(
            {"result": context.get_input("even_number") ** context.get_config("exponent")}
        )


class DiamondBranchB(StepHandler):
    handler_name = "examples.diamond.branch_b"

    def call(self, context: StepContext) -> StepHandlerResult:
        start = context.get_dependency_result("diamond_start")
        return self.success({"result": start ** context.get_config("exponent")})


class DiamondBranchC(StepHandler):
    handler_name = "examples.diamond.branch_c"

    def call(self, context: StepContext) -> StepHandlerResult:
        start = context.get_dependency_result("diamond_start")
        return self.success({"result": start ** context.get_config("exponent")})


class DiamondEnd(StepHandler):
    handler_name = "examples.diamond.end"

    def call(self, context: StepContext) -> StepHandlerResult:
        branch_b = context.get_dependency_result("diamond_branch_b")
        branch_c = context.get_dependency_result("diamond_branch_c")
        return self.success({"result": branch_b * branch_c})
