"""A client host's job: submit a batch of example workflows and wait for all of them.

    python -m tests.deploy.batch_client COUNT [TIMEOUT]

Settings come from TASKER_* variables (database, broker). Prints one JSON line:
{"statuses": {...}, "results": {workflow: {step: result}}, "seconds": ...}.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

from tasker.client import TaskerClient
from tasker.config import load_config

WORKFLOWS = ("linear_workflow", "diamond_workflow")


def main(argv: list[str]) -> int:
    count = int(argv[0])
    timeout = float(argv[1]) if len(argv) > 1 else 60.0
    client = TaskerClient(load_config())
    try:
        started = time.monotonic()
        submitted = [
            (name, client.create_task("examples", name, "1.0.0", {"even_number": 2}))
            for name in (WORKFLOWS[i % len(WORKFLOWS)] for i in range(count))
        ]
        deadline = started + timeout
        statuses: Counter[str] = Counter()
        results: dict[str, dict[str, object]] = {}
        for name, task_uuid in submitted:
            view = client.wait(task_uuid, timeout=max(deadline - time.monotonic(), 0.1))
            statuses[view.status] += 1
            results.setdefault(name, {step.name: step.results for step in view.steps})
        seconds = time.monotonic() - started
    finally:
        client.close()
    print(json.dumps({"statuses": dict(statuses), "results": results, "seconds": seconds}))
    return 0 if statuses == Counter({"complete": count}) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
