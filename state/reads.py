"""The read model behind the API's lists and health checks (writes live elsewhere)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from tasker.state import read_queries
from tasker.state.db import Database
from tasker.state.records import TaskView


class TaskPage(msgspec.Struct, frozen=True):
    """One page of tasks (newest first, without their steps) and how many match in all."""

    tasks: list[TaskView]
    total_count: int


class TemplateSummary(msgspec.Struct, frozen=True):
    namespace: str
    name: str
    version: str
    description: str
    step_count: int
    updated_at: datetime


class ReadModel:
    def __init__(self, database: Database) -> None:
        self.database = database

    def list_tasks(
        self,
        *,
        page: int,
        per_page: int,
        namespace: str | None = None,
        status: str | None = None,
        name: str | None = None,
    ) -> TaskPage:
        """Tasks matching every given filter, `per_page` at a time (pages count from 1)."""
        params = {"namespace": namespace, "status": status, "name": name}
        paged = {**params, "limit": per_page, "offset": (page - 1) * per_page}
        with self.database.transaction() as unit:
            rows = unit.execute_sql(read_queries.LIST_TASKS, paged)
            total = unit.execute_sql(read_queries.COUNT_TASKS, params)
        fields = [f for f in TaskView.__struct_fields__ if f != "steps"]
        tasks = [TaskView(**dict(zip(fields, row, strict=True)), steps=[]) for row in rows]
        return TaskPage(tasks, int(total[0][0]))

    def list_templates(self, namespace: str | None = None) -> list[TemplateSummary]:
        with self.database.transaction() as unit:
            rows = unit.execute_sql(read_queries.LIST_TEMPLATES, {"namespace": namespace})
        return [TemplateSummary(*row) for row in rows]

    def namespaces(self) -> list[str]:
        """Namespaces that have templates (their worker queues are worth watching)."""
        with self.database.transaction() as unit:
            return [row[0] for row in unit.execute_sql(read_queries.TEMPLATE_NAMESPACES)]

    def ping(self) -> None:
        """Raise unless the database answers a query."""
        with self.database.transaction() as unit:
            unit.execute_sql(read_queries.PING)
