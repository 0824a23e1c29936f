"""Handlers of the linear workflow: each step raises its input to a configured exponent."""

from __future__ import annotations

from tasker.handlers import StepContext, StepHandler, StepHandlerResult


class _PowerOfPrevious(StepHandler):
    """Raise the previous step's result (or the context's even_number) to `exponent`."""

    previous_step: str | None = None

    def call(self, context: StepContext) -> StepHandlerResult:
        if self.previous_step is None:
            value = context.get_input("even_number")
        else:
            value = context.get_dependency_result(self.previous_step)
        if not isinstance(value, int):
            return self.failure(
                f"expected an integer input, got {value!r}",
                error_type="validation_error",
                retryable=False,
            )
        return self.success({"result": value ** context.get_config("exponent")})


class LinearStep1(_PowerOfPrevious):
    handler_name = "examples.linear.step_1"


class LinearStep2(_PowerOfPrevious):
    handler_name = "examples.linear.step_2"
    previous_step = "linear_step_1"


class LinearStep3(_PowerOfPrevious):
    handler_name = "examples.linear.step_3"
    previous_step = "linear_step_2"


class LinearStep4(_PowerOfPrevious):
    handler_name = "examples.linear.step_4"
    previous_step = "linear_step_3"
