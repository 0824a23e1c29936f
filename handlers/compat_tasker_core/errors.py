"""`tasker_core.errors`: the handler error tree, under Tasker's names."""

from tasker.handlers.errors import (
    AuthenticationError,
    AuthorizationError,
    BusinessLogicError,
    ConfigurationError,
    NetworkError,
    NotFoundError,
    PermanentError,
    RateLimitError,
    ResourceContentionError,
    RetryableError,
    ServiceUnavailableError,
    StepTimeoutError,
    TaskerError,
    ValidationError,
)

# Tasker calls it TimeoutError; only here, where shadowing the builtin is what callers expect.
TimeoutError = StepTimeoutError

__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "BusinessLogicError",
    "ConfigurationError",
    "NetworkError",
    "NotFoundError",
    "PermanentError",
    "RateLimitError",
    "ResourceContentionError",
    "RetryableError",
    "ServiceUnavailableError",
    "TaskerError",
    "TimeoutError",
    "ValidationError",
]
