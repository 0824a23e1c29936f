"""Handlers of the numeric DAG examples (tree, mixed DAG): configured by the template.

`examples.math.power` raises one input to `exponent`: the step named by `input`, or the
context's `even_number` when `input` is unset. `examples.math.product` and
`examples.math.sum` combine the steps named by `inputs`. The arithmetic lives in the
template's `handler.initialization`, so one handler serves every step of a shape.
"""

from __future__ import annotations

import math

from tasker.handlers import StepContext, StepHandler, StepHandlerResult


class Power(StepHandler):
    handler_name = "examples.math.power"

    def call(self, context: StepContext) -> StepHandlerResult:
        source = context.get_config("input")
        value = (
            context.get_input("even_number")
            if source is None
            else context.get_dependency_result(source)
        )
        if not isinstance(value, int):
            return self.failure(
                f"expected an integer input, got {value!r}", "validation_error", retryable=False
            )
        return self.success({"result": value ** context.get_config("exponent")})


class Product(StepHandler):
    handler_name = "examples.math.product"

    def call(self, context: StepContext) -> StepHandlerResult:
        values = [context.get_dependency_result(name) for name in context.get_config("inputs")]
        return self.success({"result": math.prod(values)})


class Sum(StepHandler):
    handler_name = "examples.math.sum"

    def call(self, context: StepContext) -> StepHandlerResult:
        values = [context.get_dependency_result(name) for name in context.get_config("inputs")]
        return self.success({"result": sum(values)})
