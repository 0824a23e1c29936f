"""The function style of handler: `@step_handler("name")` on a plain function.

    @step_handler("charge_card")
    @depends_on(cart="validate_cart")
    @inputs("payment_token")
    def charge_card(cart, payment_token, context):
        return {"charged": cart["total"]}

Parameters named in `depends_on` receive parent results (`get_dependency_result`), those in
`inputs` task-context values (`get_input`), and a parameter named `context` the StepContext.
A dict return is a success; a StepHandlerResult passes through; an exception becomes a
failure (see `outcome`). The decorators only annotate the function, which stays callable as
before; `load_handler_modules` finds it through its `_handler_class` attribute.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from tasker.handlers.base import StepHandler
from tasker.handlers.context import StepContext
from tasker.handlers.outcome import result_from_exception, result_from_value, settle
from tasker.handlers.result import StepHandlerResult

F = TypeVar("F", bound=Callable[..., Any])

_DEPENDS_ATTR = "_depends_on"
_INPUTS_ATTR = "_inputs"
HANDLER_CLASS_ATTR = "_handler_class"


def step_handler(name: str, version: str = "1.0.0") -> Callable[[F], F]:
    """Make `fn` the handler registered as `name`."""

    def decorate(fn: F) -> F:
        setattr(fn, HANDLER_CLASS_ATTR, function_handler_class(fn, name, version))
        return fn

    return decorate


def depends_on(**param_to_step: str) -> Callable[[F], F]:
    """Inject each named parent step's result as the parameter of the given name."""

    def decorate(fn: F) -> F:
        setattr(fn, _DEPENDS_ATTR, {**getattr(fn, _DEPENDS_ATTR, {}), **param_to_step})
        return fn

    return decorate


def inputs(*keys: str) -> Callable[[F], F]:
    """Inject each task-context value as the parameter of the same name."""

    def decorate(fn: F) -> F:
        setattr(fn, _INPUTS_ATTR, [*getattr(fn, _INPUTS_ATTR, []), *keys])
        return fn

    return decorate


def function_handler_class(
    fn: Callable[..., Any], name: str, version: str = "1.0.0"
) -> type[StepHandler]:
    """A StepHandler subclass whose `call` runs `fn` with injected arguments."""

    def call(self: StepHandler, context: StepContext) -> StepHandlerResult:
        try:
            return result_from_value(settle(call_function(fn, context)))
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
    return type(getattr(fn, "__name__", name), (StepHandler,), namespace)


def call_function(fn: Callable[..., Any], context: StepContext) -> Any:
    """Call `fn` with its declared injections; a plain `fn(context)` when it declares none.

    The declarations are read at call time, so decorator order does not matter.
    """
    kwargs: dict[str, Any] = {
        param: context.get_dependency_result(step)
        for param, step in getattr(fn, _DEPENDS_ATTR, {}).items()
    }
    kwargs.update({key: context.get_input(key) for key in getattr(fn, _INPUTS_ATTR, [])})
    parameters = inspect.signature(fn).parameters
    if "context" in parameters:
        kwargs["context"] = context
    elif not kwargs and parameters:
        return fn(context)
    return fn(**kwargs)
