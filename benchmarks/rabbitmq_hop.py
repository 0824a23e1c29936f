"""One RabbitMQ hop and raw messages/s: the Tasker backend next to a raw pika floor.

Run: `python -m benchmarks.rabbitmq_hop [--hops 500] [--messages 5000] [--batch 100]`.

Measured in the same run, on fresh quorum queues (the layout the backend uses):
- `hop`: one message sent in one process, in hand in another (p50/p99), one at a time,
  raw and Tasker alternating message by message so both see the same machine load.
  Raw floor: `basic_publish` with confirm -> `basic_consume` callback. Tasker:
  `send` -> `receive(wait=...)`. Clocks are CLOCK_MONOTONIC, shared by processes.
- `drain`: receive + ack of a pre-filled queue on one thread, batches of `--batch`.
  Raw floor: `basic_consume` with prefetch `--batch`, `basic_ack` per message. Tasker:
  `receive(max_messages=batch)` then `ack` each.
- `pipeline`: a producer process `send_batch`es while a consumer process receives and
  acks; messages/s end to end (the raw floor publishes with a confirm per message too).
- `handover`: the added latency of settling from another thread: a thread blocked in
  `receive` holds a delivery that a second thread acks (time until it went out).
Rates are medians of `--rounds` alternating rounds. Results: a Markdown table on stdout
and `benchmarks/results/rabbitmq_hop.json`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pika

from benchmarks.processes import unwind_on_sigterm
from tasker.messaging.broker import Delivery
from tasker.messaging.rabbitmq import RabbitMQBroker
from tasker.messaging.rabbitmq_consumer import Receipt

URL = os.environ.get("TASKER_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
RESULTS = Path(__file__).parent / "results" / "rabbitmq_hop.json"
WARMUP = 50
_QUORUM = {"x-queue-type": "quorum"}
_PERSISTENT = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)


def _channel(confirm: bool = True) -> tuple[Any, Any]:
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    if confirm:
        channel.confirm_delivery()
    return connection, channel


def _fresh_queue(label: str) -> str:
    queue = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    connection, channel = _channel()
    channel.queue_declare(queue, durable=True, arguments=_QUORUM)
    connection.close()
    return queue


def _delete(*queues: str) -> None:
    connection, channel = _channel()
    for queue in queues:
        channel.queue_delete(queue)
    connection.close()


# -- consumer processes (spawned; each reports over a pipe) ------------------------------


def _raw_hop_consumer(queue: str, count: int, pipe: Connection) -> None:
    connection, channel = _channel(confirm=False)
    channel.basic_qos(prefetch_count=1)
    seen = 0

    def on_message(ch: Any, method: Any, _properties: Any, _body: bytes) -> None:
        nonlocal seen
        arrived = time.monotonic_ns()
        ch.basic_ack(method.delivery_tag)
        pipe.send(arrived)
        seen += 1

    channel.basic_consume(queue, on_message)
    pipe.send("ready")
    while seen < count:
        connection.process_data_events(time_limit=1.0)
    connection.close()


def _tasker_hop_consumer(queue: str, count: int, pipe: Connection) -> None:
    broker = RabbitMQBroker(URL)
    broker.receive(queue, wait=0.0)  # registers the consumer
    pipe.send("ready")
    seen = 0
    while seen < count:
        for delivery in broker.receive(queue, wait=5.0):
            arrived = time.monotonic_ns()
            broker.ack(delivery)
            pipe.send(arrived)
            seen += 1
    broker.close()


def _raw_drain(queue: str, count: int, batch: int, pipe: Connection) -> None:
    connection, channel = _channel(confirm=False)
    channel.basic_qos(prefetch_count=batch)
    seen = 0
    started = 0

    def on_message(ch: Any, method: Any, _properties: Any, _body: bytes) -> None:
        nonlocal seen, started
        started = started or time.monotonic_ns()
        ch.basic_ack(method.delivery_tag)
        seen += 1

    channel.basic_consume(queue, on_message)
    pipe.send("ready")
    while seen < count:
        connection.process_data_events(time_limit=1.0)
    pipe.send((started, time.monotonic_ns()))
    connection.close()


def _tasker_drain(queue: str, count: int, batch: int, pipe: Connection) -> None:
    broker = RabbitMQBroker(URL)
    pipe.send("ready")
    seen = 0
    started = 0
    while seen < count:
        deliveries = broker.receive(queue, max_messages=batch, wait=5.0)
        started = started or time.monotonic_ns()
        for delivery in deliveries:
            broker.ack(delivery)
        seen += len(deliveries)
    pipe.send((started, time.monotonic_ns()))
    broker.close()


# -- measurements ------------------------------------------------------------------------


def _spawn(target: Callable[..., None], *args: Any) -> tuple[Any, Connection]:
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=target, args=(*args, theirs))
    process.start()
    assert ours.recv() == "ready"
    return process, ours


def hops(count: int) -> dict[str, dict[str, float]]:
    """Raw and Tasker hops interleaved message by message, so both see the same load."""
    raw_queue, tasker_queue = _fresh_queue("hop_raw"), _fresh_queue("hop_tasker")
    raw_process, raw_pipe = _spawn(_raw_hop_consumer, raw_queue, WARMUP + count)
    tasker_process, tasker_pipe = _spawn(_tasker_hop_consumer, tasker_queue, WARMUP + count)
    connection, channel = _channel()
    broker = RabbitMQBroker(URL)
    senders: dict[str, tuple[Callable[[bytes], None], Connection]] = {
        "raw": (
            lambda body: channel.basic_publish("", raw_queue, body, _PERSISTENT, mandatory=True),
            raw_pipe,
        ),
        "tasker": (lambda body: broker.send(tasker_queue, body), tasker_pipe),
    }
    latencies: dict[str, list[float]] = {"raw": [], "tasker": []}
    for index in range(WARMUP + count):
        for kind, (send, pipe) in senders.items():
            sent = time.monotonic_ns()
            send(b'{"n": %d}' % index)
            arrived = pipe.recv()
            if index >= WARMUP:
                latencies[kind].append((arrived - sent) / 1e6)
    raw_process.join()
    tasker_process.join()
    connection.close()
    broker.close()
    _delete(raw_queue, tasker_queue)
    return {kind: _percentiles(samples) for kind, samples in latencies.items()}


def _prefill(queue: str, count: int) -> None:
    connection, channel = _channel(confirm=False)
    for index in range(count):
        channel.basic_publish("", queue, b'{"n": %d}' % index, _PERSISTENT)
    while channel.queue_declare(queue, passive=True).method.message_count < count:
        connection.process_data_events(time_limit=0.05)
    connection.close()


def drain(kind: str, count: int, batch: int) -> float:
    queue = _fresh_queue(f"drain_{kind}")
    _prefill(queue, count)
    process, pipe = _spawn(_raw_drain if kind == "raw" else _tasker_drain, queue, count, batch)
    started, finished = pipe.recv()
    process.join()
    _delete(queue)
    return float(count / ((finished - started) / 1e9))


def pipeline(kind: str, count: int, batch: int) -> float:
    queue = _fresh_queue(f"pipe_{kind}")
    process, pipe = _spawn(_raw_drain if kind == "raw" else _tasker_drain, queue, count, batch)
    started = time.monotonic_ns()
    bodies = [b'{"n": %d}' % index for index in range(batch)]
    if kind == "raw":
        connection, channel = _channel()
        for _ in range(count // batch):
            for body in bodies:
                channel.basic_publish("", queue, body, _PERSISTENT, mandatory=True)
        connection.close()
    else:
        broker = RabbitMQBroker(URL)
        for _ in range(count // batch):
            broker.send_batch(queue, bodies)
        broker.close()
    _, finished = pipe.recv()
    process.join()
    _delete(queue)
    return float(count / ((finished - started) / 1e9))


def handover(rounds: int) -> dict[str, float]:
    """Ack from a second thread while the owner is blocked in `receive` on its link."""
    broker = RabbitMQBroker(URL)
    queue, idle = _fresh_queue("handover"), _fresh_queue("idle")
    broker.send_batch(queue, [b"{}"] * rounds)
    held: list[Delivery] = []
    ready, done = threading.Event(), threading.Event()

    def owner() -> None:
        for _ in range(rounds):
            held[:] = broker.receive(queue, wait=5.0)
            ready.set()
            while not done.is_set():
                broker.receive(idle, wait=1.0)  # blocked here while the ack comes in
            done.clear()

    thread = threading.Thread(target=owner)
    thread.start()
    took = []
    for _ in range(rounds):
        ready.wait()
        ready.clear()
        time.sleep(0.002)  # let the owner block
        receipt = held[0].receipt
        assert isinstance(receipt, Receipt)
        started = time.perf_counter()
        broker.ack(held[0])
        while receipt.tag in receipt.link.consumers.held:
            time.sleep(0)
        took.append((time.perf_counter() - started) * 1e3)
        done.set()
        broker.wake()
    thread.join()
    broker.close()
    _delete(queue, idle)
    return _percentiles(took)


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "max_ms": round(ordered[-1], 3),
    }


def _machine() -> dict[str, Any]:
    try:
        status = subprocess.run(["rabbitmqctl", "-q", "version"], capture_output=True, text=True)
        rabbitmq = status.stdout.strip()
    except OSError:
        rabbitmq = "unknown"
    return {"cores": os.cpu_count(), "python": platform.python_version(), "rabbitmq": rabbitmq}


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hops", type=int, default=500)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    hopped = hops(args.hops)
    raw_hop, tasker_hop = hopped["raw"], hopped["tasker"]
    # Alternating rounds, medians: the machine's load changes from one second to the next.
    rates: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for kind in ("raw", "tasker"):
            rates.setdefault(f"drain_{kind}", []).append(drain(kind, args.messages, args.batch))
            rates.setdefault(f"pipe_{kind}", []).append(pipeline(kind, args.messages, args.batch))
    raw_drain, tasker_drain = (statistics.median(rates[f"drain_{k}"]) for k in ("raw", "tasker"))
    raw_pipe, tasker_pipe = (statistics.median(rates[f"pipe_{k}"]) for k in ("raw", "tasker"))
    handed = handover(200)
    machine = _machine()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine,
        "load_average": os.getloadavg(),
        "hop": {"raw": raw_hop, "tasker": tasker_hop},
        "drain_msgs_per_s": {"raw": round(raw_drain), "tasker": round(tasker_drain)},
        "pipeline_msgs_per_s": {"raw": round(raw_pipe), "tasker": round(tasker_pipe)},
        "cross_thread_ack": handed,
        "settings": vars(args),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    ratio = tasker_hop["p50_ms"] / raw_hop["p50_ms"]
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"RabbitMQ {machine['rabbitmq']}, {machine['cores']} cores, load average {load}")
    print("| measure | raw pika floor | tasker | ratio |")
    print("|---|---|---|---|")
    print(f"| hop p50 (ms) | {raw_hop['p50_ms']} | {tasker_hop['p50_ms']} | {ratio:.2f}x |")
    hop99 = tasker_hop["p99_ms"] / raw_hop["p99_ms"]
    print(f"| hop p99 (ms) | {raw_hop['p99_ms']} | {tasker_hop['p99_ms']} | {hop99:.2f}x |")
    drained = tasker_drain / raw_drain
    print(
        f"| receive+ack, batch {args.batch} (msg/s) | {raw_drain:.0f} | {tasker_drain:.0f} "
        f"| {drained:.2f}x |"
    )
    piped = tasker_pipe / raw_pipe
    print(f"| send+receive+ack (msg/s) | {raw_pipe:.0f} | {tasker_pipe:.0f} | {piped:.2f}x |")
    print(
        f"| cross-thread ack handover (ms) | - | p50 {handed['p50_ms']} / "
        f"p99 {handed['p99_ms']} | - |"
    )


if __name__ == "__main__":
    main()
