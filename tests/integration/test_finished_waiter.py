"""The API's long polls LISTEN for task-finished notices only while a request waits: a
listening connection is woken by every NOTIFY in the database, whatever its channel."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import psycopg
import pytest

from tasker.api.waiter import FinishedWaiter
from tasker.state.notices import FINISHED_CHANNEL

pytestmark = pytest.mark.postgres

_LAST_STATEMENTS = """
SELECT query FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ~ 'LISTEN'
"""


def _listens(database_url: str) -> bool:
    """Whether a backend of this database last ran a LISTEN (not an UNLISTEN)."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        queries = [row[0] for row in connection.execute(_LAST_STATEMENTS).fetchall()]
    return any(query.startswith("LISTEN") for query in queries)


def _eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_it_listens_while_a_request_waits_and_stops_after(
    make_database: Callable[[], str],
) -> None:
    database_url = make_database()
    waiter = FinishedWaiter(database_url)
    task, other = uuid.uuid4(), uuid.uuid4()

    def finish(finished_task: uuid.UUID) -> None:
        with psycopg.connect(database_url, autocommit=True) as connection:
            notice = f"{finished_task}:complete"
            connection.execute("SELECT pg_notify(%s, %s)", (FINISHED_CHANNEL, notice))

    async def wait_for_notice() -> tuple[bool, bool, bool, bool]:
        finished = await waiter.register(task)
        listening = _listens(database_url)
        try:
            finish(other)
            await asyncio.sleep(0.3)
            woken_by_another = finished.done()
            finish(task)
            await asyncio.wait_for(asyncio.shield(finished), timeout=5.0)
        finally:
            waiter.unregister(task, finished)
        stopped = _eventually(lambda: not _listens(database_url))
        return listening, woken_by_another, finished.done(), stopped

    try:
        assert not _listens(database_url)  # nobody waits: no LISTEN
        outcome = asyncio.run(wait_for_notice())
    finally:
        waiter.stop()

    listening, woken_by_another, woken, stopped_after = outcome
    assert (listening, woken_by_another, woken, stopped_after) == (True, False, True, True)
