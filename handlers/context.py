"""What a handler receives: `StepContext`, built from the step message alone.

Everything travels in the message (task context, dependency results, handler config,
checkpoint), so reading it never touches a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from tasker.messaging.messages import StepMessage


@dataclass(frozen=True)
class StepContext:
    """One attempt of one step, as the handler sees it (Tasker's field and method names).

    `input_data` is the task context, `step_config` the template's
    `handler.initialization`, `retry_count` the number of earlier attempts and
    `max_retries` the total number of attempts allowed.
    """

    task_uuid: UUID
    step_uuid: UUID
    step_name: str
    handler_name: str = ""
    namespace: str = ""
    task_name: str = ""
    task_version: str = ""
    correlation_id: str | None = None
    input_data: dict[str, Any] = field(default_factory=dict)
    dependency_results: dict[str, Any] = field(default_factory=dict)
    step_config: dict[str, Any] = field(default_factory=dict)
    step_inputs: dict[str, Any] = field(default_factory=dict)
    retry_count: int = 0
    max_retries: int = 1
    checkpoint: dict[str, Any] | None = None
    trace_context: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_message(cls, message: StepMessage) -> StepContext:
        """The context for the attempt `message` asks for."""
        return cls(
            task_uuid=message.task_uuid,
            step_uuid=message.step_uuid,
            step_name=message.step_name,
            handler_name=message.handler.callable,
            namespace=message.namespace,
            task_name=message.task_name,
            task_version=message.task_version,
            correlation_id=message.correlation_id,
            input_data=message.input_data,
            dependency_results=message.dependency_results,
            step_config=message.handler.initialization,
            step_inputs=message.step_inputs,
            retry_count=max(message.attempt - 1, 0),
            max_retries=message.max_attempts,
            checkpoint=message.checkpoint,
            trace_context=message.trace_context,
        )

    @property
    def attempt(self) -> int:
        """This attempt's number, starting at 1."""
        return self.retry_count + 1

    # Task input and handler config

    def get_input(self, key: str) -> Any:
        """A task-context value, or None."""
        return self.input_data.get(key)

    def get_input_or(self, key: str, default: Any = None) -> Any:
        """A task-context value, or `default` when it is missing or None."""
        value = self.input_data.get(key)
        return default if value is None else value

    def get_config(self, key: str) -> Any:
        """A `handler.initialization` value, or None."""
        return self.step_config.get(key)

    # Dependency results

    def get_dependency_result(self, step_name: str) -> Any:
        """A parent step's result, unwrapped from a `{"result": ...}` envelope; None if absent."""
        value = self.dependency_results.get(step_name)
        if isinstance(value, dict) and "result" in value:
            return value["result"]
        return value

    def get_dependency_field(self, step_name: str, *path: str) -> Any:
        """A nested field of a parent's result (`path` of dict keys); None if any is missing."""
        value = self.get_dependency_result(step_name)
        for key in path:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    def get_all_dependency_results(self, prefix: str) -> list[Any]:
        """Unwrapped results of every parent whose name starts with `prefix` (batch workers)."""
        names = sorted(name for name in self.dependency_results if name.startswith(prefix))
        results = (self.get_dependency_result(name) for name in names)
        return [result for result in results if result is not None]

    def get_dependency_result_keys(self) -> list[str]:
        """Names of the parent steps whose results are available."""
        return list(self.dependency_results)

    # Retries

    def is_retry(self) -> bool:
        """Whether an earlier attempt of this step failed."""
        return self.retry_count > 0

    def is_last_retry(self) -> bool:
        """Whether this is the last attempt allowed."""
        return self.retry_count >= self.max_retries - 1

    # Checkpoint (a batch worker resuming where an earlier attempt stopped)

    def has_checkpoint(self) -> bool:
        """Whether an earlier attempt saved a cursor."""
        return self.checkpoint_cursor is not None

    @property
    def checkpoint_cursor(self) -> Any:
        """The saved cursor position, or None."""
        return (self.checkpoint or {}).get("cursor")

    @property
    def checkpoint_items_processed(self) -> int:
        """How many items earlier attempts processed (0 without a checkpoint)."""
        return int((self.checkpoint or {}).get("items_processed") or 0)

    @property
    def accumulated_results(self) -> Any:
        """Partial results saved with the checkpoint, or None."""
        return (self.checkpoint or {}).get("accumulated_results")
