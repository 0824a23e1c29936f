"""`tasker demo`: the example workflows, end to end, on real processes.

With no database configured it starts an embedded PostgreSQL 16 (the `pgserver` wheel),
installs the schema and PGMQ, runs one orchestrator and one worker as separate OS
processes, submits the examples, shows their progress and results, and shuts down.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tasker.cli import render
from tasker.cli.cluster import LocalCluster, free_port
from tasker.cli.commands import CommandError, prepare_database, register_templates
from tasker.config import Config, with_overrides
from tasker.examples import HANDLER_MODULES, TEMPLATE_DIRECTORY
from tasker.state.templates import load_template_directory

#: example name -> (template name, task context)
EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "linear": ("linear_workflow", {"even_number": 6}),
    "diamond": ("diamond_workflow", {"even_number": 6}),
    # The gallery of dynamic workflows (issue 10).
    "tree": ("tree_workflow", {"even_number": 2}),
    "mixed_dag": ("mixed_dag_workflow", {"even_number": 2}),
    "approval": ("conditional_approval", {"amount": 7500, "requester": "ada"}),
    "batch_csv": ("batch_csv_workflow", {"row_count": 1000}),
    "data_pipeline": ("data_pipeline", {"days": 7}),
    "order_fulfillment": (
        "order_fulfillment",
        {
            "order_id": "A-1001",
            "items": [{"sku": "BOOK-1", "quantity": 2, "price_cents": 1250}],
            "customer_email": "ada@example.com",
            "payment_failures": 1,
        },
    ),
}
EXAMPLE_NAMESPACE = "examples"
EXAMPLE_HANDLER_MODULES = HANDLER_MODULES


def run_demo(workflows: list[str], config: Config) -> int:
    unknown = sorted(set(workflows) - set(EXAMPLES))
    if unknown:
        raise CommandError(f"unknown example(s) {unknown}; choose from {sorted(EXAMPLES)}")
    with _database(config) as url:
        config = with_overrides(
            config,
            database_url=url,
            poll_interval_seconds=0.5,
            api_bind=f"127.0.0.1:{free_port()}",
            api_url=None,
            auth_enabled=False,
        )
        print(f"database: {_redacted(url)}; broker: {config.broker}", flush=True)
        prepare_database(config)
        register_templates(config, load_template_directory(TEMPLATE_DIRECTORY))
        cluster = LocalCluster(
            config, namespaces=EXAMPLE_NAMESPACE, handler_modules=EXAMPLE_HANDLER_MODULES
        )
        with cluster:
            pids = ", ".join(str(p.pid) for p in cluster.processes)
            print(f"started an orchestrator and a worker (pids {pids})", flush=True)
            print(f"API: {cluster.api_url} (try: tasker --url {cluster.api_url} health)")
            code = _submit_all(workflows, cluster.api_url)
        codes = sorted(cluster.exit_codes.values())
        print(f"processes stopped: exit codes {codes}", flush=True)
        return code or int(any(codes))


@contextmanager
def _database(config: Config) -> Iterator[str]:
    """The configured database, or an embedded one when TASKER_DATABASE_URL is unset."""
    if "TASKER_DATABASE_URL" in os.environ or config.database_url != Config().database_url:
        yield config.database_url
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="tasker-demo-") as directory:
        print("starting an embedded PostgreSQL (pgserver)...", flush=True)
        server = pgserver.get_server(directory, cleanup_mode="stop")  # type: ignore[attr-defined]
        try:
            yield str(server.get_uri())
        finally:
            server.cleanup()


def _redacted(url: str) -> str:
    return url.split("@", 1)[-1] if "@" in url else url


def _submit_all(workflows: list[str], api_url: str) -> int:
    from tasker.client import TaskerClient

    client = TaskerClient(api_url)
    failures = 0
    try:
        for workflow in workflows:
            name, context = EXAMPLES[workflow]
            started = time.perf_counter()
            task_uuid = client.create_task(EXAMPLE_NAMESPACE, name, "1.0.0", context)
            print(f"\n== {workflow}: task {task_uuid} submitted with context {context}")
            view = client.wait(
                task_uuid, timeout=60, on_progress=render.progress_printer(sys.stdout)
            )
            print(render.task(view, "table", dag=True))
            print(f"({(time.perf_counter() - started) * 1000:.0f} ms end to end)")
            failures += view.status != "complete"
    finally:
        client.close()
    return 1 if failures else 0


__all__ = ["run_demo"]
