"""The raw floors every engine figure is compared with, measured in the same run:
the broker alone (one hop between processes, messages/s) and a bare step transaction."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import psycopg

from benchmarks.stats import percentiles
from tasker.config import Config
from tasker.messaging.backends import broker_from_config

_HOP_QUEUE = "bench_floor_hop"
_RATE_QUEUE = "bench_floor_rate"


def _receiver(config: Config, count: int, results: Any) -> None:
    broker = broker_from_config(config)
    latencies: list[float] = []
    try:
        while len(latencies) < count:
            for delivery in broker.receive(_HOP_QUEUE, max_messages=10, wait=5.0):
                sent_ns = int(delivery.body.split(b":")[1].rstrip(b"}"))
                latencies.append((time.time_ns() - sent_ns) / 1e6)
                broker.ack(delivery)
    finally:
        broker.close()
        results.put(latencies)


def hop_latency(config: Config, count: int = 300) -> dict[str, float]:
    """Send in this process -> message in hand in another, one message at a time."""
    broker = broker_from_config(config)
    broker.ensure_queue(_HOP_QUEUE)
    results: Any = multiprocessing.get_context("spawn").Queue()
    receiver = multiprocessing.get_context("spawn").Process(
        target=_receiver, args=(config, count, results)
    )
    receiver.start()
    time.sleep(2.0)  # let the receiver connect and start waiting
    for _ in range(count):
        broker.send(_HOP_QUEUE, b'{"t":%d}' % time.time_ns())
        time.sleep(0.005)  # one at a time: latency, not queueing
    latencies = results.get(timeout=120)
    receiver.join(timeout=30)
    broker.close()
    return percentiles(latencies)


def message_rate(config: Config, count: int = 3000, batch: int = 50) -> float:
    """Messages/s for batched send, then batched receive + ack, on one thread."""
    broker = broker_from_config(config)
    try:
        broker.ensure_queue(_RATE_QUEUE)
        started = time.perf_counter()
        for _ in range(count // batch):
            broker.send_batch(_RATE_QUEUE, [b'{"n":1}'] * batch)
        received = 0
        while received < count:
            deliveries = broker.receive(_RATE_QUEUE, max_messages=batch, wait=2.0)
            for delivery in deliveries:
                broker.ack(delivery)
            received += len(deliveries)
        return round(count / (time.perf_counter() - started), 1)
    finally:
        broker.close()


def step_transaction(database_url: str, count: int = 500) -> dict[str, float]:
    """A bare step transaction: guarded UPDATE of one row + INSERT of one history row."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(
            "CREATE TEMP TABLE floor_steps (id int PRIMARY KEY, state text, n int);"
            "CREATE TEMP TABLE floor_history (id int, state text, at timestamptz);"
            "INSERT INTO floor_steps VALUES (1, 'a', 0)"
        )
        samples = []
        for index in range(count):
            started = time.perf_counter()
            with connection.transaction():
                connection.execute(
                    "UPDATE floor_steps SET state = %s, n = n + 1 WHERE id = 1 AND state = %s",
                    ("b" if index % 2 == 0 else "a", "a" if index % 2 == 0 else "b"),
                )
                connection.execute("INSERT INTO floor_history VALUES (1, 'x', now())")
            samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)
