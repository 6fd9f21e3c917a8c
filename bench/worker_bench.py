#!/usr/bin/env python
"""Benchmark the worker against PostgreSQL's own speed, and its memory (targets F4, F5, F8).

Modes (numbers are printed, never asserted):

  drain       F4: fill the queue with messages of --readings-per-message readings, then
              time ``consume_queue`` draining it (from its first stored row to its last).
              Baseline, same run: one plain ``COPY`` of the same rows into an empty copy of
              ``sensor_readings`` with all its indexes. Prints both rates and the ratio.
  end-to-end  F5: POST requests of --readings-per-message readings (1,000) over HTTP to
              the production web command (the ``web:`` line of deploy/Procfile) while the
              worker (the ``worker:`` line) runs, until every row is stored; the same
              ``COPY`` baseline. Also samples the web workers' memory (F8).
  memory      F8: the worker's resident memory, sampled while it consumes --messages
              messages published as fast as it takes them: start, peak, end, and whether
              it stayed flat.

It uses the bench database of bench/ingest_bench.py (``iot_care_bench``) and a queue of
its own (``bench-worker``): never the dev database or the default queues.

    .venv/bin/python bench/worker_bench.py drain --messages 5000 --readings-per-message 100
    .venv/bin/python bench/worker_bench.py end-to-end --requests 500 --readings-per-message 1000
    .venv/bin/python bench/worker_bench.py memory --messages 1000000
"""

from __future__ import annotations

import argparse
import http.client
import json
import shlex
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_bench import (  # noqa: E402 - the bench folder is not a package
    PORT,
    PYTHON,
    ROOT,
    bench_setup,
    ingest_post,
    reset_state,
    start,
    stop,
    threads_run,
    wait_for_http,
)

BASELINE_TABLE = "bench_copy_baseline"
WORKER_BENCH_QUEUE = "bench-worker"
READINGS_COLUMNS = ("device_id", "metric", "value", "unit", "measured_at")


# --- the rows, the baseline ------------------------------------------------------------


def reading_rows(
    devices: list[int], messages: int, per_message: int, *, offset_ms: int = 0
) -> list[list[tuple]]:
    """Rows of each message: distinct points, one per millisecond, within the accepted window."""
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    return [
        [
            (
                devices[number % len(devices)],
                "heart_rate",
                float(60 + (number + index) % 40),
                "bpm",
                base + timedelta(milliseconds=offset_ms + number * per_message + index),
            )
            for index in range(per_message)
        ]
        for number in range(messages)
    ]


def _raw_connection():
    import psycopg
    from django.db import connection

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


def copy_baseline(rows_by_message: list[list[tuple]]) -> float:
    """Seconds for one plain COPY of the rows into an empty copy of ``sensor_readings``."""
    rows = [row for rows in rows_by_message for row in rows]
    with _raw_connection() as raw:
        raw.execute(f"DROP TABLE IF EXISTS {BASELINE_TABLE}")
        raw.execute(f"CREATE TABLE {BASELINE_TABLE} (LIKE sensor_readings INCLUDING ALL)")
        try:
            started = time.perf_counter()
            with raw.transaction(), raw.cursor() as cursor:
                with cursor.copy(f"COPY {BASELINE_TABLE} ({', '.join(READINGS_COLUMNS)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            elapsed = time.perf_counter() - started
            stored = raw.execute(f"SELECT count(*) FROM {BASELINE_TABLE}").fetchone()[0]
            assert stored == len(rows), f"baseline stored {stored} of {len(rows)} rows"
        finally:
            raw.execute(f"DROP TABLE IF EXISTS {BASELINE_TABLE}")
    return elapsed


def stored_rows() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sensor_readings")
        return cursor.fetchone()[0]


def failures_check() -> None:
    """A message failing means rows that will never come: say why instead of waiting."""
    from ingest.models import IngestMessage

    failing = IngestMessage.objects.filter(attempts__gt=0).values_list("last_error", flat=True).first()
    if failing is not None:
        raise SystemExit(f"messages are failing (is another run using the bench database?): {failing}")


def watch_rows(expected: int, *, timeout: float, interval: float = 0.02) -> tuple[float, int, float]:
    """(time the first rows appeared, how many there were then, time all ``expected`` were there)."""
    deadline = time.monotonic() + timeout
    first_at, first_count = None, 0
    next_failure_check = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= next_failure_check:
            failures_check()
            next_failure_check = time.monotonic() + 1
        count = stored_rows()
        now = time.monotonic()
        if count and first_at is None:
            first_at, first_count = now, count
        if count >= expected:
            return first_at, first_count, now
        time.sleep(interval)
    raise SystemExit(f"timed out: {stored_rows()} of {expected} rows stored")


def print_versus_copy(label: str, rows: int, seconds: float, copy_seconds: float, target: float) -> None:
    rate, copy_rate = rows / seconds, rows / copy_seconds
    print(f"  {label:24} {rate:10,.0f} rows/s  ({rows:,} rows in {seconds:.2f} s)")
    print(
        f"  {'plain COPY (baseline)':24} {copy_rate:10,.0f} rows/s  ({rows:,} rows in {copy_seconds:.2f} s)"
    )
    print(f"  ratio: {rate / copy_rate:.2f}x   (target >= {target}x)")


# --- processes and memory ---------------------------------------------------------------


def procfile_command(name: str) -> list[str]:
    """The command of one line of deploy/Procfile, as production runs it."""
    for line in (ROOT / "deploy/Procfile").read_text().splitlines():
        process, _, command = line.partition(":")
        if process.strip() == name:
            return ["sh", "-c", command.strip()]
    raise SystemExit(f"deploy/Procfile has no {name}: line")


def port_free_check() -> None:
    """A server left on the port would answer for the one about to start."""
    import socket

    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", PORT)) == 0:
            raise SystemExit(f"port {PORT} is in use: stop what listens there first")


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(children)
            stack.extend(children)
    return found


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def gunicorn_workers(root_pid: int) -> list[int]:
    """The worker processes of the gunicorn started (through ``sh -c``) as ``root_pid``."""
    masters = [
        pid
        for pid in [root_pid, *descendants(root_pid)]  # ``sh -c`` may have exec'd gunicorn itself
        if "gunicorn" in _command_line(pid) and not _command_line(pid).startswith("sh ")
    ]
    return descendants(masters[0]) if masters else []


class MemorySampler(threading.Thread):
    """Samples the resident memory of some processes every ``interval`` seconds."""

    def __init__(self, pids_of, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pids_of = pids_of
        self.interval = interval
        self.samples: list[tuple[float, dict[int, float]]] = []
        self._finished = threading.Event()

    def run(self) -> None:
        while not self._finished.is_set():
            sample = {pid: mb for pid in self.pids_of() if (mb := rss_mb(pid)) is not None}
            if sample:
                self.samples.append((time.monotonic(), sample))
            self._finished.wait(self.interval)

    def finish(self) -> None:
        self._finished.set()
        self.join()


# --- messages on the queue ---------------------------------------------------------------


def device_batch_body(device_id: int, rows: list[tuple]) -> tuple[str, bytes]:
    from ingest.messages import DeviceBatch

    batch = DeviceBatch(
        message_id=uuid.uuid4(),
        device_id=device_id,
        accepted_at=datetime.now(UTC),
        readings=[
            {"metric": metric, "value": value, "unit": unit, "measured_at": measured_at}
            for _, metric, value, unit, measured_at in rows
        ],
        events=[],
    )
    return str(batch.message_id), batch.to_body()


def publish_bodies(bodies, *, confirm: bool, max_depth: int | None = None) -> int:
    """Publish (id, body) pairs to the bench queue; without confirms, keep the depth bounded."""
    import pika

    from ingest.broker.connection import open_connection
    from ingest.broker.topology import Topology
    from ingest.messages import DEVICE_BATCH

    topology = Topology.from_settings()
    broker = open_connection(role="bench")
    channel = broker.channel()
    if confirm:
        channel.confirm_delivery()
    published = 0
    for message_id, body in bodies:
        properties = pika.BasicProperties(
            message_id=message_id, type=DEVICE_BATCH, content_type="application/json", delivery_mode=2
        )
        channel.basic_publish(topology.exchange, topology.routing_key, body, properties)
        published += 1
        if max_depth and published % 1000 == 0:
            while channel.queue_declare(topology.queue, passive=True).method.message_count > max_depth:
                broker.sleep(0.2)
    broker.close()
    return published


# --- modes --------------------------------------------------------------------------------


def run_drain(args, env) -> None:
    """F4."""
    devices, _ = reset_state()
    rows_by_message = reading_rows(devices, args.messages, args.readings_per_message)
    total = args.messages * args.readings_per_message
    started = time.monotonic()
    publish_bodies((device_batch_body(rows[0][0], rows) for rows in rows_by_message), confirm=True)
    print(
        f"drain: {args.messages:,} messages of {args.readings_per_message} readings queued in "
        f"{time.monotonic() - started:.1f} s"
    )
    worker = start([PYTHON, "manage.py", "consume_queue", *args.worker_args], env)
    worker_memory = MemorySampler(lambda: [worker.pid])
    worker_memory.start()
    try:
        first_at, first_count, done_at = watch_rows(total, timeout=3600)
    finally:
        stop(worker)
        worker_memory.finish()
    copy_seconds = copy_baseline(rows_by_message)
    # From the first commit on: process start-up and connecting are not the worker's speed.
    print_versus_copy(
        "worker draining",
        total - first_count,
        done_at - first_at,
        copy_seconds * (total - first_count) / total,
        0.75,
    )
    print_memory("worker", worker_memory)


def run_end_to_end(args, env) -> None:
    """F5, and the web workers' memory for F8."""
    devices, keys = reset_state()
    per_request = args.readings_per_message
    rows_by_request = reading_rows(devices, args.requests, per_request)
    bodies = [
        json.dumps(
            {
                "readings": [
                    {"metric": metric, "value": value, "unit": unit, "measured_at": measured_at.isoformat()}
                    for _, metric, value, unit, measured_at in rows
                ]
            }
        ).encode()
        for rows in rows_by_request
    ]
    web_env = {**env, "WEB_PORT": str(PORT)}
    port_free_check()
    web = start(procfile_command("web"), web_env)
    wait_for_http(PORT, "/healthz", web, "the web command")
    worker = start(procfile_command("worker"), env)
    web_memory = MemorySampler(lambda: gunicorn_workers(web.pid))
    web_memory.start()
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        for index in range(number, args.requests, args.concurrency):
            # Each device posts its own rows: one key per device, as devices do.
            device_index = devices.index(rows_by_request[index][0][0])
            status = ingest_post(connection, bodies[index], keys[device_index])
            with lock:
                statuses[status] = statuses.get(status, 0) + 1

    total = args.requests * per_request
    try:
        time.sleep(1)  # the worker connected
        started = time.monotonic()
        threads_run(client, args.concurrency)
        accepted = time.monotonic()
        _, _, done_at = watch_rows(total, timeout=3600)
    finally:
        stop(web)
        stop(worker)
        web_memory.finish()
    copy_seconds = copy_baseline(rows_by_request)
    print(
        f"end-to-end: {args.requests:,} requests of {per_request} readings, {args.concurrency} clients, "
        f"web and worker as in deploy/Procfile"
    )
    print(f"  statuses: {statuses}; all accepted after {accepted - started:.2f} s")
    print_versus_copy("accepted -> stored", total, done_at - started, copy_seconds, 0.6)
    print_memory("web workers", web_memory)


def print_memory(label: str, sampler: MemorySampler) -> None:
    if not sampler.samples:
        print(f"  {label}: no memory samples")
        return
    pids = sorted({pid for _, sample in sampler.samples for pid in sample})
    for pid in pids:
        series = [sample[pid] for _, sample in sampler.samples if pid in sample]
        print(
            f"  {label} pid {pid}: RSS start {series[0]:.0f} MB, peak {max(series):.0f} MB, "
            f"end {series[-1]:.0f} MB ({len(series)} samples)"
        )


def run_memory(args, env) -> None:
    """F8: the worker's memory over many messages."""
    devices, _ = reset_state()
    worker = start([PYTHON, "manage.py", "consume_queue", *args.worker_args], env)
    sampler = MemorySampler(lambda: [worker.pid], interval=1.0)
    sampler.start()
    per_message = args.readings_per_message
    chunk = 10_000

    def bodies():
        for start_number in range(0, args.messages, chunk):
            count = min(chunk, args.messages - start_number)
            rows_by_message = reading_rows(devices, count, per_message, offset_ms=start_number * per_message)
            for rows in rows_by_message:
                yield device_batch_body(rows[0][0], rows)

    started = time.monotonic()
    try:
        # No confirm per message (this is not the accept path): the queue is kept under
        # 100,000 messages, and every message is counted in the database at the end.
        publish_bodies(bodies(), confirm=False, max_depth=100_000)
        first_at, _, done_at = watch_rows(args.messages * per_message, timeout=24 * 3600, interval=1.0)
    finally:
        sampler.finish()
        stop(worker)
    # From the first stored rows on: before, the process is still starting.
    series = [sample[worker.pid] for at, sample in sampler.samples if worker.pid in sample and at >= first_at]
    tenth = series[len(series) // 10] if series else float("nan")
    print(
        f"memory: {args.messages:,} messages of {per_message} reading(s) in {done_at - started:.0f} s, "
        f"worker RSS sampled every second"
    )
    print(
        f"  start {series[0]:.0f} MB, after 10% {tenth:.0f} MB, peak {max(series):.0f} MB, end {series[-1]:.0f} MB"
    )
    growth = series[-1] - tenth
    print(f"  from 10% to the end: {growth:+.0f} MB -> {'flat' if abs(growth) < 0.1 * tenth else 'NOT flat'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["drain", "end-to-end", "memory"])
    parser.add_argument("--messages", type=int, default=5000, help="messages (drain, memory)")
    parser.add_argument("--requests", type=int, default=500, help="HTTP requests (end-to-end)")
    parser.add_argument(
        "--readings-per-message", type=int, default=None, help="100 (drain), 1000 (end-to-end), 1 (memory)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="HTTP clients (end-to-end)")
    parser.add_argument(
        "--worker-args", default="", help="extra consume_queue options, e.g. '--batch-size 100'"
    )
    args = parser.parse_args()
    if args.readings_per_message is None:
        args.readings_per_message = {"drain": 100, "end-to-end": 1000, "memory": 1}[args.mode]
    args.worker_args = shlex.split(args.worker_args)

    # A queue of its own: another bench may be running on ``bench-ingest``.
    env = bench_setup(RABBITMQ_QUEUE_NAME=WORKER_BENCH_QUEUE)
    {"drain": run_drain, "end-to-end": run_end_to_end, "memory": run_memory}[args.mode](args, env)


if __name__ == "__main__":
    main()
