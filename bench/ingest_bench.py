#!/usr/bin/env python
"""Benchmark the ingest pipeline on this machine, against real gunicorn, RabbitMQ and PostgreSQL.

Modes (numbers are printed, never asserted):

  end-to-end  POST N readings in batches over HTTP to gunicorn while consume_queue runs;
              wait until every row is in sensor_readings; print readings/s and the
              accept -> committed latency percentiles (ledger received_at -> processed_at).
  consumer    pre-fill the queue with N readings, then time consume_queue draining it.
  single      one reading per request with wrk: requests/s and latency percentiles.
  versus-naive
              the same wrk script against the production web command (gunicorn with
              gunicorn.conf.py) and then against the naive design in
              bench/baselines/naive_fastapi.py (uvicorn x 3), the worker running in both
              runs; prints both figures and the ratio. The naive app publishes to its own
              queue, which nobody consumes (purged after): its run has the worker idle, so
              the ratio leans in the baseline's favour.

  latency     F3: an open-loop schedule of --rate requests/s of --batch readings (100 x 50 by
              default) for --seconds against the production web command, the worker
              running; each reading's latency is its sensor_readings.received_at (set by
              the database when the worker stores it) minus the time the client was due
              to send its request (a late client does not hide a slow server).
  import      F7: import_file of --readings readings (an NDJSON file generated here) with
              the worker running; prints the import's readings/s and when all were stored.

It uses a database and queue of its own (``iot_care_bench``, ``bench-ingest``), created
and emptied here; the dev database and the default queues are never touched.

    .venv/bin/python bench/ingest_bench.py end-to-end --readings 500000 --batch 1000
    .venv/bin/python bench/ingest_bench.py consumer --readings 500000 --batch 1000
    .venv/bin/python bench/ingest_bench.py single --seconds 20 --connections 32
    .venv/bin/python bench/ingest_bench.py versus-naive --seconds 20 --connections 64
    .venv/bin/python bench/ingest_bench.py latency --seconds 30 --rate 100 --batch 50
    .venv/bin/python bench/ingest_bench.py import --readings 1000000

BENCH_DATABASE_NAME, BENCH_QUEUE_NAME and BENCH_PORT move a run to a database, queues and
port of its own.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent  # gunicorn and uvicorn of the same environment
# Overridable, so that two runs on one machine do not share a database, queues or a port.
BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "iot_care_bench")
BENCH_QUEUE = os.environ.get("BENCH_QUEUE_NAME", "bench-ingest")
NAIVE_QUEUE = f"{BENCH_QUEUE}-naive"
PORT = int(os.environ.get("BENCH_PORT", "8765"))


def bench_environment(base_url: str) -> dict[str, str]:
    parts = urlsplit(base_url)
    database_url = parts._replace(path=f"/{BENCH_DB}").geturl()
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.dev",
        "DJANGO_DEBUG": "false",
        "DATABASE_URL": database_url,
        "RABBITMQ_QUEUE_NAME": BENCH_QUEUE,
        "INGEST_DEVICE_RATE": "100000000/second",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def prepare_database(env: dict[str, str], admin_url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    for command in (["bootstrap_db"], ["migrate", "-v", "0"], ["collectstatic", "--no-input", "-v", "0"]):
        subprocess.run(
            [PYTHON, "manage.py", *command], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
        )


def bench_state_clear(extra_queues: Callable | None = None) -> None:
    """Empty the bench tables, keys and queues (``extra_queues(channel)`` declares more, by name)."""
    from django.db import connection

    from ingest.broker.connection import open_connection
    from ingest.broker.topology import Topology, topology_declare
    from ingest.models import DeadLetter, DeviceAPIKey, IngestMessage

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE sensor_readings, device_events, alerts, webhook_events")
    IngestMessage.objects.all().delete()
    DeadLetter.objects.all().delete()
    DeviceAPIKey.objects.all().delete()
    broker = open_connection()
    channel = broker.channel()
    topology = Topology.from_settings()
    topology_declare(channel=channel, topology=topology)
    for queue in [*topology.queue_names, *(extra_queues(channel) if extra_queues else [])]:
        channel.queue_purge(queue)
    broker.close()


def reset_state() -> tuple[list[int], list[str]]:
    """Empty the bench tables and queues; return device ids and their keys."""
    from ingest.models import Device
    from ingest.services.devices import device_create, device_key_issue

    bench_state_clear()

    devices, keys = [], []
    for number in range(16):
        serial = f"BENCH-{number:03d}"
        device = Device.objects.filter(serial_no=serial).first() or device_create(
            serial_no=serial, device_type="vital"
        )
        _, key = device_key_issue(device=device)
        devices.append(device.id)
        keys.append(key)
    return devices, keys


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def wait_for_http(port: int, path: str, process: subprocess.Popen, what: str) -> None:
    """Until ``path`` answers 200 on ``port`` (30 s at most, or the process exits)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    stop(process)
    raise SystemExit(f"{what} did not start")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def start_gunicorn(env: dict[str, str], workers: int) -> subprocess.Popen:
    process = start(
        [
            str(BIN / "gunicorn"),
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{PORT}",
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env,
    )
    wait_for_http(PORT, "/healthz", process, "gunicorn")
    return process


def readings_body(count: int, offset: int) -> bytes:
    """``count`` distinct points (one per millisecond), all within the accepted window."""
    return readings_body_at(datetime.now(UTC) - timedelta(days=1), count, offset)


def readings_body_at(base: datetime, count: int, offset: int) -> bytes:
    readings = [
        {
            "metric": "heart_rate",
            "value": 60 + number % 40,
            "unit": "bpm",
            "measured_at": (base + timedelta(milliseconds=offset + number)).isoformat(),
        }
        for number in range(count)
    ]
    return json.dumps({"readings": readings}).encode()


def ingest_post(connection: http.client.HTTPConnection, body: bytes, key: str) -> int:
    """POST one body to the ingest API on a kept-alive connection; return the status."""
    connection.request(
        "POST",
        "/api/v1/ingest/",
        body=body,
        headers={"Content-Type": "application/json", "Authorization": f"Api-Key {key}"},
    )
    response = connection.getresponse()
    response.read()
    return response.status


def threads_run(target, count: int) -> None:
    """Run ``target(number)`` on ``count`` threads and wait for all of them."""
    threads = [threading.Thread(target=target, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def wait_for_rows(expected: int, timeout: float) -> float:
    from django.db import connection

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM sensor_readings")
            if cursor.fetchone()[0] >= expected:
                return time.monotonic()
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {expected} rows")


def ledger_latencies_ms() -> list[float]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM processed_at - received_at) * 1000 "
            "FROM ingest_ingestmessage WHERE status = 'processed'"
        )
        return [row[0] for row in cursor.fetchall()]


def run_end_to_end(args, env) -> None:
    devices, keys = reset_state()
    requests = args.readings // args.batch
    bodies = [readings_body(args.batch, number * args.batch) for number in range(requests)]
    web = start_gunicorn(env, args.web_workers)
    consumers = [
        start([PYTHON, "manage.py", "consume_queue", "--batch-size", str(args.consumer_batch)], env)
        for _ in range(args.consumers)
    ]
    statuses: list[int] = []
    request_ms: list[float] = []
    lock = threading.Lock()

    def client(thread_number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        key = keys[thread_number % len(keys)]
        for index in range(thread_number, requests, args.concurrency):
            started = time.monotonic()
            status = ingest_post(connection, bodies[index], key)
            with lock:
                statuses.append(status)
                request_ms.append((time.monotonic() - started) * 1000)

    try:
        started = time.monotonic()
        threads_run(client, args.concurrency)
        accepted = time.monotonic()
        visible = wait_for_rows(requests * args.batch, timeout=600)
    finally:
        stop(web)
        for consumer in consumers:
            stop(consumer)
    latencies = ledger_latencies_ms()
    total = requests * args.batch
    print(
        f"end-to-end: {total} readings in {requests} requests of {args.batch}, "
        f"{args.concurrency} clients, {args.web_workers} gunicorn workers, {args.consumers} consumer(s)"
    )
    print(f"  statuses: { {s: statuses.count(s) for s in set(statuses)} }")
    print(
        f"  accepted in {accepted - started:.2f} s -> {total / (accepted - started):,.0f} readings/s accepted"
    )
    print(
        f"  all visible after {visible - started:.2f} s -> {total / (visible - started):,.0f} readings/s end to end"
    )
    print(
        f"  request latency ms: p50 {percentile(request_ms, 0.5):.1f}  p95 {percentile(request_ms, 0.95):.1f}"
        f"  p99 {percentile(request_ms, 0.99):.1f}"
    )
    print(
        f"  accept -> committed ms: p50 {percentile(latencies, 0.5):.0f}  p95 {percentile(latencies, 0.95):.0f}"
        f"  p99 {percentile(latencies, 0.99):.0f}  max {max(latencies):.0f}"
    )


def run_consumer(args, env) -> None:
    devices, _ = reset_state()
    from django.utils import timezone

    from ingest.broker.publisher import OutgoingMessage, get_publisher
    from ingest.messages import DEVICE_BATCH, DeviceBatch

    publisher = get_publisher()
    base = timezone.now() - timedelta(days=1)
    messages = args.readings // args.batch
    for number in range(messages):
        readings = [
            {
                "metric": "heart_rate",
                "value": 70.0,
                "unit": "bpm",
                "measured_at": base + timedelta(milliseconds=number * args.batch + offset),
            }
            for offset in range(args.batch)
        ]
        batch = DeviceBatch(uuid.uuid4(), devices[number % len(devices)], timezone.now(), readings, [])
        publisher.publish(OutgoingMessage(str(batch.message_id), batch.to_body(), DEVICE_BATCH))
    publisher.close()
    started = time.monotonic()
    consumers = [
        start(
            [
                PYTHON,
                "manage.py",
                "consume_queue",
                "--stop-when-idle",
                "--batch-size",
                str(args.consumer_batch),
            ],
            env,
        )
        for _ in range(args.consumers)
    ]
    visible = wait_for_rows(messages * args.batch, timeout=600)
    for consumer in consumers:
        stop(consumer)
    total = messages * args.batch
    print(
        f"consumer: {total} readings in {messages} messages of {args.batch}, {args.consumers} consumer(s), "
        f"batch {args.consumer_batch} messages"
    )
    print(
        f"  drained in {visible - started:.2f} s (including process start) -> "
        f"{total / (visible - started):,.0f} readings/s"
    )


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Api-Key %(key)s"
wrk.body = '%(body)s'
"""


def one_reading_body() -> str:
    reading = {
        "metric": "heart_rate",
        "value": 72.5,
        "unit": "bpm",
        "measured_at": datetime.now(UTC).isoformat(),
    }
    return json.dumps({"readings": [reading]})


def wrk_run(url: str, *, key: str, body: str, connections: int, seconds: int) -> str:
    """wrk's report for one reading per request (the same Lua script for every target)."""
    if shutil.which("wrk") is None:
        raise SystemExit("this mode needs wrk (apt-get install wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % {"key": key, "body": body})
    result = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", script.name, url],
        capture_output=True,
        text=True,
        check=True,
    )
    os.unlink(script.name)
    return result.stdout


def wrk_figures(report: str) -> tuple[float, str, int]:
    """Requests/s, the p99 latency as wrk prints it, and the count of non-2xx answers."""
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1))
    p99 = re.search(r"^\s+99%\s+(\S+)", report, re.M).group(1)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", report)
    return rate, p99, int(non_2xx.group(1)) if non_2xx else 0


def run_single(args, env) -> None:
    _, keys = reset_state()
    web = start_gunicorn(env, args.web_workers)
    consumer = start([PYTHON, "manage.py", "consume_queue"], env)
    try:
        report = wrk_run(
            f"http://127.0.0.1:{PORT}/api/v1/ingest/",
            key=keys[0],
            body=one_reading_body(),
            connections=args.connections,
            seconds=args.seconds,
        )
    finally:
        stop(web)
        stop(consumer)
    print(
        f"single: one reading per request, {args.connections} connections, {args.web_workers} gunicorn workers"
    )
    print(report)


def run_versus_naive(args, env) -> None:
    """F1/F2 of the front-door targets: the product's web command against the naive design."""
    _, keys = reset_state()
    body = one_reading_body()
    url = f"http://127.0.0.1:{PORT}/api/v1/ingest/"
    consumer = start([PYTHON, "manage.py", "consume_queue"], env)
    servers = {
        # The product: the web line of deploy/Procfile (gunicorn.conf.py, GUNICORN_WORKERS=2).
        "project": (
            [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "config.wsgi:application"],
            {**env, "GUNICORN_BIND": f"127.0.0.1:{PORT}", "GUNICORN_WORKERS": str(args.web_workers)},
            "/healthz",
        ),
        "naive": (
            [str(BIN / "uvicorn"), "bench.baselines.naive_fastapi:app", "--port", str(PORT)]
            + ["--workers", "3", "--log-level", "warning", "--no-access-log"],
            {**env, "NAIVE_QUEUE": NAIVE_QUEUE, "NAIVE_KEY": keys[0]},
            "/docs",
        ),
    }
    figures = {}
    try:
        for name, (command, server_env, ready_path) in servers.items():  # one after the other
            server = start(command, server_env)
            wait_for_http(PORT, ready_path, server, name)
            try:
                figures[name] = wrk_run(
                    url, key=keys[0], body=body, connections=args.connections, seconds=args.seconds
                )
            finally:
                stop(server)
    finally:
        stop(consumer)
        from ingest.broker.connection import open_connection

        broker = open_connection()
        broker.channel().queue_delete(NAIVE_QUEUE)
        broker.close()
    print(
        f"versus-naive: one reading per request, wrk -c{args.connections} -d{args.seconds}s, worker running"
    )
    rates = {}
    for name, report in figures.items():
        rate, p99, non_2xx = wrk_figures(report)
        rates[name] = rate
        print(f"  {name:8} {rate:9,.0f} req/s   p99 {p99:>9}   non-2xx {non_2xx}")
    print(f"  ratio project / naive: {rates['project'] / rates['naive']:.2f}x")


def production_web(env: dict[str, str], workers: int, port: int = PORT) -> subprocess.Popen:
    """The web line of deploy/Procfile: gunicorn with gunicorn.conf.py."""
    process = start(
        [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "config.wsgi:application"],
        {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": str(workers)},
    )
    wait_for_http(port, "/healthz", process, "gunicorn")
    return process


def run_latency(args, env) -> None:
    """F3: accept -> stored latency under a fixed offered load (open loop)."""
    import queue

    from django.db import connection

    _, keys = reset_state()
    requests = args.rate * args.seconds
    base = datetime.now(UTC) - timedelta(hours=1)
    # Request i carries the points base + (i * batch + j) ms: its readings are found by time.
    bodies = [readings_body_at(base, args.batch, index * args.batch) for index in range(requests)]
    due_at: list[float] = [0.0] * requests
    statuses: list[int] = []
    work: queue.Queue = queue.Queue()
    lock = threading.Lock()

    def client() -> None:
        connection_ = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        while (item := work.get()) is not None:
            index = item
            try:
                status = ingest_post(connection_, bodies[index], keys[index % len(keys)])
            except OSError:
                connection_.close()
                connection_ = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
                status = 0
            with lock:
                statuses.append(status)

    web = production_web(env, args.web_workers)
    consumers = [start([PYTHON, "manage.py", "consume_queue"], env) for _ in range(args.consumers)]
    try:
        time.sleep(2)  # the worker connected and waiting, as in production
        threads = [threading.Thread(target=client) for _ in range(args.concurrency)]
        for thread in threads:
            thread.start()
        started = time.time() + 0.5
        for index in range(requests):
            due_at[index] = started + index / args.rate
            pause = due_at[index] - time.time()
            if pause > 0:
                time.sleep(pause)
            work.put(index)
        for _ in threads:
            work.put(None)
        for thread in threads:
            thread.join()
        accepted = statuses.count(202)
        wait_for_rows(accepted * args.batch, timeout=300)
    finally:
        stop(web)
        for consumer in consumers:
            stop(consumer)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM measured_at - %s) * 1000, extract(epoch FROM received_at) "
            "FROM sensor_readings",
            [base],
        )
        rows = cursor.fetchall()
    latencies = [
        (float(received) - due_at[int(round(offset_ms)) // args.batch]) * 1000 for offset_ms, received in rows
    ]
    print(
        f"latency (F3): {args.rate} requests/s x {args.batch} readings for {args.seconds} s offered "
        f"(open loop), {args.concurrency} clients, {args.web_workers} gunicorn workers, "
        f"{args.consumers} worker(s)"
    )
    print(f"  statuses: { {s: statuses.count(s) for s in sorted(set(statuses))} }")
    print(
        f"  accept -> stored ms (sensor_readings.received_at - due send time), {len(latencies)} readings: "
        f"p50 {percentile(latencies, 0.5):.0f}  p95 {percentile(latencies, 0.95):.0f}  "
        f"p99 {percentile(latencies, 0.99):.0f}  max {max(latencies, default=float('nan')):.0f}"
    )


def run_import(args, env) -> None:
    """F7: import_file of a generated NDJSON file, the worker running."""
    reset_state()
    base = datetime.now(UTC) - timedelta(days=1)
    with tempfile.NamedTemporaryFile("w", suffix=".ndjson", delete=False) as handle:
        for number in range(args.readings):
            measured_at = (base + timedelta(milliseconds=number)).isoformat()
            handle.write(
                f'{{"metric": "heart_rate", "value": {60 + number % 40}, "unit": "bpm", '
                f'"measured_at": "{measured_at}"}}\n'
            )
        path = handle.name
    consumers = [start([PYTHON, "manage.py", "consume_queue"], env) for _ in range(args.consumers)]
    try:
        time.sleep(2)
        started = time.monotonic()
        subprocess.run(
            [PYTHON, "manage.py", "import_file", path, "--format", "ndjson", "--device", "BENCH-000"]
            + ["--chunk", str(args.batch)],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        imported = time.monotonic()
        visible = wait_for_rows(args.readings, timeout=1800)
    finally:
        for consumer in consumers:
            stop(consumer)
        os.unlink(path)
    print(
        f"import (F7): {args.readings} readings, NDJSON, --chunk {args.batch}, {args.consumers} worker(s) running"
    )
    print(
        f"  import_file finished in {imported - started:.2f} s -> {args.readings / (imported - started):,.0f} readings/s"
    )
    print(
        f"  all stored after {visible - started:.2f} s -> {args.readings / (visible - started):,.0f} readings/s"
    )


def bench_setup(**extra_env: str) -> dict[str, str]:
    """Read .env like the app does, prepare the bench database, set Django up; return the env."""
    env_file = ROOT / ".env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key and not key.startswith("#"):
                os.environ.setdefault(key, value)
    base_url = os.environ.get("DATABASE_URL", "postgres://iot_care:iot_care@127.0.0.1:5432/iot_care")
    env = {**bench_environment(base_url), **extra_env}
    prepare_database(env, urlsplit(base_url)._replace(path="/postgres").geturl())
    django_setup(env)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "mode", choices=["end-to-end", "consumer", "single", "versus-naive", "latency", "import"]
    )
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000, help="readings per request/message")
    parser.add_argument("--concurrency", type=int, default=8, help="HTTP clients (end-to-end, latency)")
    parser.add_argument("--rate", type=int, default=100, help="requests per second offered (latency)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (single)")
    parser.add_argument("--seconds", type=int, default=20, help="duration (single)")
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--consumers", type=int, default=1)
    parser.add_argument("--consumer-batch", type=int, default=50, help="messages per transaction")
    args = parser.parse_args()

    env = bench_setup()
    modes = {
        "end-to-end": run_end_to_end,
        "consumer": run_consumer,
        "single": run_single,
        "versus-naive": run_versus_naive,
        "latency": run_latency,
        "import": run_import,
    }
    modes[args.mode](args, env)


if __name__ == "__main__":
    main()
