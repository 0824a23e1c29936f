"""The function style of decision and batch handlers (Tasker's decorator names).

    @decision_handler("orders.route")
    @depends_on(order="validate_order")
    def route(order, context):
        return Decision.route(["auto_approve"]) if order["amount"] < 1000 else Decision.skip("big")

    @batch_analyzer("csv.analyze", worker_template="process_csv_batch")
    def analyze(context):
        return BatchConfig(total_items=1000, batch_size=200)

    @batch_worker("csv.process")
    def process(batch_context, context):
        return {"rows": batch_context.end_cursor - batch_context.start_cursor}

`@depends_on` and `@inputs` inject as for `@step_handler`; a parameter named `context` (or
`_context`) receives the StepContext and `batch_context` the worker's BatchWorkerContext.
The no-op worker of a batchable step that found no batches returns without calling `fn`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tasker.handlers.base import StepHandler
from tasker.handlers.batch import Batchable
from tasker.handlers.batch_types import BatchAnalyzerOutcome
from tasker.handlers.context import StepContext
from tasker.handlers.decision import DecisionHandler, DecisionPointOutcome
from tasker.handlers.functional import _DEPENDS_ATTR, _INPUTS_ATTR, HANDLER_CLASS_ATTR
from tasker.handlers.outcome import result_from_exception, result_from_value, settle
from tasker.handlers.result import StepHandlerResult

F = TypeVar("F", bound=Callable[..., Any])
_CONTEXT_PARAMS = ("context", "_context")


@dataclass(frozen=True)
class BatchConfig:
    """What a `@batch_analyzer` function returns: how many items, in what batch size."""

    total_items: int
    batch_size: int
    max_batches: int | None = None
    step_size: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)


def decision_handler(name: str, version: str = "1.0.0") -> Callable[[F], F]:
    """Make `fn` the decision handler `name`; it returns `Decision.route/skip` (or a result)."""

    def call(self: DecisionHandler, context: StepContext, fn: Callable[..., Any]) -> Any:
        value = _invoke(fn, context)
        if isinstance(value, DecisionPointOutcome):
            return self.decision_success_with_outcome(value)
        return value

    return _decorator(name, version, DecisionHandler, call)


def batch_analyzer(name: str, worker_template: str, version: str = "1.0.0") -> Callable[[F], F]:
    """Make `fn` the batchable handler `name`; it returns a BatchConfig (or ranges/a result)."""

    def call(self: _BatchHandler, context: StepContext, fn: Callable[..., Any]) -> Any:
        value = _invoke(fn, context)
        if isinstance(value, BatchConfig):
            ranges = self.create_cursor_ranges(
                value.total_items, value.batch_size, value.step_size, value.max_batches
            )
            return self.batch_analyzer_success(
                None, None, worker_template, ranges, value.total_items, value.metadata
            )
        if isinstance(value, BatchAnalyzerOutcome):
            return self.batch_analyzer_success(value, worker_template_name=worker_template)
        return value

    return _decorator(name, version, _BatchHandler, call)


def batch_worker(name: str, version: str = "1.0.0") -> Callable[[F], F]:
    """Make `fn` the batch worker handler `name`; `batch_context` receives its range."""

    def call(self: _BatchHandler, context: StepContext, fn: Callable[..., Any]) -> Any:
        no_op = self.handle_no_op_worker(context)
        if no_op is not None:
            return no_op
        return _invoke(fn, context, batch_context=self.get_batch_context(context))

    return _decorator(name, version, _BatchHandler, call)


class _BatchHandler(StepHandler, Batchable):
    """Base of the classes `@batch_analyzer` and `@batch_worker` make."""


def _decorator(
    name: str, version: str, base: type[StepHandler], body: Callable[..., Any]
) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        def call(self: StepHandler, context: StepContext) -> StepHandlerResult:
            try:
                return result_from_value(settle(body(self, context, fn)))
            except Exception as exc:
                return result_from_exception(exc)

        namespace = {
            "handler_name": name,
            "handler_version": version,
            "call": call,
            "__doc__": fn.__doc__,
            "__module__": fn.__module__,
            "__qualname__": getattr(fn, "__qualname__", name),
            "function": staticmethod(fn),
        }
        setattr(fn, HANDLER_CLASS_ATTR, type(getattr(fn, "__name__", name), (base,), namespace))
        return fn

    return decorate


def _invoke(fn: Callable[..., Any], context: StepContext, **extra: Any) -> Any:
    """Call `fn` with its injections, `extra` values it names, and the context."""
    parameters = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {
        param: context.get_dependency_result(step)
        for param, step in getattr(fn, _DEPENDS_ATTR, {}).items()
    }
    kwargs.update({key: context.get_input(key) for key in getattr(fn, _INPUTS_ATTR, [])})
    kwargs.update({key: value for key, value in extra.items() if key in parameters})
    kwargs.update({key: context for key in _CONTEXT_PARAMS if key in parameters})
    if not kwargs and parameters:
        return settle(fn(context))
    return settle(fn(**kwargs))
