#!/usr/bin/env python
"""Throughput per CPU core of each process of the pipeline, for capacity planning.

Each mode runs the real processes (the production web command, ``consume_queue``, the
product's publisher) against this machine's RabbitMQ and PostgreSQL, and reads the CPU
time every process used during the measured window from /proc: so a figure can be
divided by the cores it took (requests/s per web core, readings/s per worker core). The
broker and PostgreSQL are shared with whatever else runs here; their CPU is what they
used in the window, everybody's included, and the machine's total is printed beside it.

  web     wrk against the web command (deploy/Procfile's ``web:`` line, --web-workers)
          for --seconds with --readings readings per request, the worker running:
          requests/s, readings/s, CPU of gunicorn, worker, bench-database backends,
          RabbitMQ, wrk.
  worker  --messages messages of --readings readings queued first, then
          ``consume_queue`` drains them: readings/s and messages/s from the first stored
          row to the last, CPU of the worker and of its database backend.
  broker  --messages messages of --body-bytes published with confirms to a queue made for
          this run (deleted after): the product's pipelined publisher (``publish_many``)
          and, as the same-run baseline, pika's BlockingChannel waiting for each confirm;
          classic and quorum (a quorum queue on this single node: no replication cost).

Every mode repeats --repeat times and prints each run and the medians. It uses the bench
database of bench/ingest_bench.py unless ``BENCH_DATABASE_NAME`` says otherwise, and
queues and a port of its own.

    .venv/bin/python bench/capacity_bench.py web --readings 1 --seconds 15 --repeat 3
    .venv/bin/python bench/capacity_bench.py web --readings 100 --seconds 15 --repeat 3
    .venv/bin/python bench/capacity_bench.py worker --messages 20000 --readings 1 --repeat 3
    .venv/bin/python bench/capacity_bench.py worker --messages 2000 --readings 100 --repeat 3
    .venv/bin/python bench/capacity_bench.py broker --messages 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

os.environ.setdefault("BENCH_QUEUE_NAME", "bench-capacity")
os.environ.setdefault("BENCH_PORT", "8793")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_bench import (  # noqa: E402 - the bench folder is not a package
    BENCH_DB,
    PORT,
    bench_setup,
    readings_body,
    reset_state,
    start,
    stop,
    wrk_figures,
    wrk_run,
)
from worker_bench import (  # noqa: E402
    descendants,
    device_batch_body,
    procfile_command,
    reading_rows,
    stored_rows,
    wait_for_http,
    watch_rows,
)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


# --- CPU time from /proc ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one process so far (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle (idle and iowait excluded)."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


def own_children_named(name: str) -> list[int]:
    """This process's descendants called ``name`` (another user's wrk is not ours)."""
    found = []
    for pid in descendants(os.getpid()):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                found.append(pid)
        except OSError:
            continue
    return found


def broker_pids() -> list[int]:
    """The RabbitMQ node the application talks to (the one listening on RABBITMQ_PORT).

    Other nodes may run on this machine (clusters of tests, on ports of their own).
    """
    port = os.environ.get("RABBITMQ_PORT", "5672")
    listing = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout
    return sorted({int(pid) for pid in re.findall(r"pid=(\d+)", listing)})


def bench_backends() -> list[int]:
    """PostgreSQL backends connected to the bench database (this sampler's own excluded)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [BENCH_DB]
        )
        return [row[0] for row in cursor.fetchall()]


class CpuWindow(threading.Thread):
    """Samples the CPU time of groups of processes; ``mark()`` opens and closes windows.

    A process is sampled every ``interval`` seconds, so one that exits keeps the value
    last read (at most ``interval`` of its CPU is missed).
    """

    def __init__(self, groups: dict, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.groups = groups  # name -> function returning the pids of that group now
        self.interval = interval
        self.latest: dict[str, dict[int, float]] = {name: {} for name in groups}
        self.lock = threading.Lock()
        self.finished = threading.Event()

    def sample(self) -> None:
        for name, pids_of in self.groups.items():
            for pid in pids_of():
                seconds = cpu_seconds(pid)
                if seconds is not None:
                    with self.lock:
                        self.latest[name][pid] = seconds

    def run(self) -> None:
        while not self.finished.is_set():
            self.sample()
            self.finished.wait(self.interval)

    def mark(self) -> dict:
        self.sample()
        with self.lock:
            totals = {name: dict(pids) for name, pids in self.latest.items()}
        return {"at": time.monotonic(), "busy": machine_busy_seconds(), "pids": totals}

    def finish(self) -> None:
        self.finished.set()
        self.join()


def cores_used(begin: dict, end: dict) -> dict:
    """Cores each group used between two marks (CPU seconds / wall seconds)."""
    wall = end["at"] - begin["at"]
    used = {}
    for name, pids in end["pids"].items():
        before = begin["pids"].get(name, {})
        used[name] = round(sum(seconds - before.get(pid, 0.0) for pid, seconds in pids.items()) / wall, 3)
    used["machine"] = round((end["busy"] - begin["busy"]) / wall, 3)
    return used


# --- modes ----------------------------------------------------------------------------------------


def run_web(args, env) -> dict:
    devices, keys = reset_state()
    body = readings_body(args.readings, 0).decode()
    web = start(
        procfile_command("web"), {**env, "WEB_PORT": str(PORT), "GUNICORN_WORKERS": str(args.web_workers)}
    )
    wait_for_http(PORT, "/healthz", web, "the web command")
    worker = start(procfile_command("worker"), env)
    beam = broker_pids()
    window = CpuWindow(
        {
            "web": lambda: [web.pid, *descendants(web.pid)],
            "worker": lambda: [worker.pid, *descendants(worker.pid)],
            "postgres_bench_db": bench_backends,
            "rabbitmq": lambda: beam,
            "wrk": lambda: own_children_named("wrk"),
        }
    )
    window.start()
    holder: dict = {}
    try:
        time.sleep(2)  # the worker connected, the web workers warm
        thread = threading.Thread(
            target=lambda: holder.setdefault(
                "report",
                wrk_run(
                    f"http://127.0.0.1:{PORT}/api/v1/ingest/",
                    key=keys[0],
                    body=body,
                    connections=args.connections,
                    seconds=args.seconds,
                ),
            )
        )
        thread.start()
        time.sleep(1)  # wrk's connections open
        begin = window.mark()
        time.sleep(args.seconds - 2)
        end = window.mark()
        thread.join()
    finally:
        window.finish()
        stop(web)
        stop(worker)
    rate, p99, non_2xx = wrk_figures(holder["report"])
    cores = cores_used(begin, end)
    return {
        "requests_per_second": round(rate),
        "readings_per_second": round(rate * args.readings),
        "p99": p99,
        "non_2xx": non_2xx,
        "cores": cores,
        "requests_per_web_core": round(rate / cores["web"]) if cores["web"] else None,
    }


def run_worker(args, env) -> dict:
    devices, _ = reset_state()
    rows_by_message = reading_rows(devices, args.messages, args.readings)
    # The product's pipelined publisher: the queue fills in seconds, not one confirm at a time.
    from ingest.broker.publisher import OutgoingMessage, get_publisher
    from ingest.messages import DEVICE_BATCH

    outgoing = [
        OutgoingMessage(message_id, body, DEVICE_BATCH)
        for message_id, body in (device_batch_body(rows[0][0], rows) for rows in rows_by_message)
    ]
    confirmed, error = get_publisher().publish_many(outgoing)
    assert error is None and len(confirmed) == len(outgoing), error
    total = args.messages * args.readings
    worker = start(procfile_command("worker"), env)
    beam = broker_pids()
    window = CpuWindow(
        {
            "worker": lambda: [worker.pid, *descendants(worker.pid)],
            "postgres_bench_db": bench_backends,
            "rabbitmq": lambda: beam,
        },
        interval=0.1,
    )
    window.start()
    try:
        while not stored_rows():
            time.sleep(0.01)
        begin = window.mark()
        first = stored_rows()
        wal_before = wal_bytes()
        watch_rows(total, timeout=600, interval=0.02)
        end = window.mark()
        wal = wal_bytes() - wal_before
    finally:
        window.finish()
        stop(worker)
    seconds = end["at"] - begin["at"]
    cores = cores_used(begin, end)
    readings_rate = (total - first) / seconds
    return {
        "readings_per_second": round(readings_rate),
        "messages_per_second": round(readings_rate / args.readings),
        "cores": cores,
        "readings_per_worker_core": round(readings_rate / cores["worker"]) if cores["worker"] else None,
        # The whole server's WAL: other databases' writes in the window are counted too.
        "wal_bytes_per_reading": round(wal / (total - first)),
        **stored_bytes(total, args.messages),
    }


def wal_bytes() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        return int(cursor.fetchone()[0])


def stored_bytes(readings: int, messages: int) -> dict:
    """Table + indexes per stored reading and per ledger row (one per message)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_total_relation_size('sensor_readings'), pg_total_relation_size('ingest_ingestmessage'),"
            " (SELECT count(*) FROM ingest_ingestmessage)"
        )
        readings_size, ledger_size, ledger_rows = cursor.fetchone()
    return {
        "readings_bytes_per_row": round(readings_size / readings),
        "ledger_bytes_per_row": round(ledger_size / max(1, ledger_rows)),
        "ledger_rows_per_message": round(ledger_rows / messages, 2),
    }


def run_broker(args, env) -> dict:
    """Publish with confirms to per-run queues: the product's publisher against pika's blocking one."""
    import pika

    from ingest.broker.connection import open_connection
    from ingest.broker.publisher import ConfirmedPublisher, OutgoingMessage
    from ingest.broker.topology import Topology, topology_declare, topology_delete
    from ingest.messages import DEVICE_BATCH

    body = b"x" * args.body_bytes
    beam = broker_pids()
    figures = {}
    for queue_type in ("classic", "quorum"):
        topology = Topology(queue=f"bench-capacity-{os.getpid()}-{queue_type}", queue_type=queue_type)
        broker = open_connection(role="bench")
        channel = broker.channel()
        topology_declare(channel=channel, topology=topology)
        window = CpuWindow({"rabbitmq": lambda: beam, "bench": lambda: [os.getpid()]})
        window.start()
        try:
            publisher = ConfirmedPublisher(topology)
            publisher.publish(OutgoingMessage(str(uuid.uuid4()), body, DEVICE_BATCH))  # connected
            messages = [OutgoingMessage(str(uuid.uuid4()), body, DEVICE_BATCH) for _ in range(args.messages)]
            begin = window.mark()
            confirmed, error = publisher.publish_many(messages)
            end = window.mark()
            publisher.close()
            assert error is None and len(confirmed) == args.messages, error
            pipelined = args.messages / (end["at"] - begin["at"])
            pipelined_cores = cores_used(begin, end)
            # Baseline: one message, one confirm, the next (pika's BlockingChannel).
            channel.confirm_delivery()
            properties = pika.BasicProperties(delivery_mode=2, type=DEVICE_BATCH)
            count = max(1, args.messages // 4)
            begin = window.mark()
            for _ in range(count):
                channel.basic_publish(topology.exchange, topology.routing_key, body, properties)
            end = window.mark()
            blocking = count / (end["at"] - begin["at"])
            figures[queue_type] = {
                "pipelined_messages_per_second": round(pipelined),
                "pipelined_cores": pipelined_cores,
                "blocking_messages_per_second": round(blocking),
                "blocking_cores": cores_used(begin, end),
                "ratio_pipelined_to_blocking": round(pipelined / blocking, 2),
            }
        finally:
            window.finish()
            topology_delete(channel=channel, topology=topology)
            broker.close()
    return figures


# --- medians --------------------------------------------------------------------------------------


def medians(runs: list[dict]) -> dict:
    """The median of every number found at the same place in each run."""
    first = runs[0]
    result = {}
    for key, value in first.items():
        if isinstance(value, dict):
            result[key] = medians([run[key] for run in runs])
        elif isinstance(value, int | float) and not isinstance(value, bool):
            result[key] = round(statistics.median(run[key] for run in runs if run[key] is not None), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["web", "worker", "broker"])
    parser.add_argument("--readings", type=int, default=1, help="readings per request or message")
    parser.add_argument("--seconds", type=int, default=15, help="wrk duration (web)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (web)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (web)")
    parser.add_argument("--messages", type=int, default=20_000, help="messages (worker, broker)")
    parser.add_argument("--body-bytes", type=int, default=400, help="message size (broker)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    env = bench_setup(RABBITMQ_QUEUE_NAME=os.environ["BENCH_QUEUE_NAME"])
    mode = {"web": run_web, "worker": run_worker, "broker": run_broker}[args.mode]
    runs = []
    for number in range(args.repeat):
        started = time.monotonic()
        runs.append(mode(args, env))
        print(f"run {number + 1} ({time.monotonic() - started:.0f} s): {json.dumps(runs[-1])}", flush=True)
    print(f"median of {args.repeat}: {json.dumps(medians(runs))}")


if __name__ == "__main__":
    main()
