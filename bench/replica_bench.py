#!/usr/bin/env python
"""Console pages read from the streaming replica vs from the primary, while ingest runs flat out.

Starts a primary and a streaming replica of its own (deploy/cluster/postgres.sh, default
/tmp/iot-care-pg-bench on ports 5443 and 5444), prepares the bench database on the primary
(bootstrap_db, migrate) and fills it like console_bench.py (readings, dead letters,
events, alerts; smaller by default). Then, for --seconds:

* ingest at full speed: --clients threads POST batches of --batch readings to a
  gunicorn (the production web command) on the primary, and one consume_queue stores them;
* the console: two more gunicorns on the same data, one with DATABASE_REPLICA_URL (its
  pages read the replica) and one without (they read the primary); one client, logged in
  as a staff user, requests the overview, the readings list and the failed messages from
  each in turn, so both see the same load;
* replication lag sampled every 0.25 s (config.replica.replica_status_read: seconds and bytes).

Prints p50/p95 per page and database, the lag's p95 and max and the ingest rate, and
writes reports/bench/replica.json. Everything it started is stopped at the end, and the
cluster removed (--keep-cluster leaves it, stopped, for the next run to reuse).

    .venv/bin/python bench/replica_bench.py
    .venv/bin/python bench/replica_bench.py --seconds 60 --clients 6 --readings 1000000

IOT_CARE_PG_CLUSTER_DIR, IOT_CARE_PG_PRIMARY_PORT and IOT_CARE_PG_REPLICA_PORT move the
cluster; BENCH_QUEUE_NAME and BENCH_PORT the queues and the first of three web ports.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("BENCH_DATABASE_NAME", "iot_care_bench")
os.environ.setdefault("BENCH_QUEUE_NAME", "bench-replica-ingest")
os.environ.setdefault("BENCH_PORT", "8781")
os.environ.setdefault("IOT_CARE_PG_CLUSTER_DIR", "/tmp/iot-care-pg-bench")
os.environ.setdefault("IOT_CARE_PG_PRIMARY_PORT", "5443")
os.environ.setdefault("IOT_CARE_PG_REPLICA_PORT", "5444")
os.environ["IOT_CARE_PG_APP_DATABASE"] = os.environ["BENCH_DATABASE_NAME"]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from console_bench import fill  # noqa: E402
from ingest_bench import (  # noqa: E402
    PORT,
    PYTHON,
    ROOT,
    bench_setup,
    ingest_post,
    percentile,
    production_web,
    readings_body,
    reset_state,
    start,
    stop,
)

CLUSTER_SCRIPT = ROOT / "deploy" / "cluster" / "postgres.sh"
OPERATOR, PASSWORD = "bench-replica-operator", "bench-replica-operator-pw-1"
PAGES = {
    "overview": "/console/",
    "readings list": "/console/records/readings/",
    "failed messages": "/console/failed/?status=dead",
}
REPORT = ROOT / "reports" / "bench" / "replica.json"


def cluster(*args: str) -> str:
    done = subprocess.run([str(CLUSTER_SCRIPT), *args], capture_output=True, text=True, env=os.environ)
    if done.returncode:
        raise SystemExit(f"postgres.sh {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def operator_create() -> None:
    from django.contrib.auth import get_user_model

    users = get_user_model()
    if not users.objects.filter(username=OPERATOR).exists():
        users.objects.create_superuser(OPERATOR, "bench@example.org", PASSWORD)


def console_login(port: int) -> str:
    """A staff session's cookie header (without the primary pin its login set)."""
    import requests

    browser = requests.Session()
    browser.get(f"http://127.0.0.1:{port}/console/login/", timeout=10)
    response = browser.post(
        f"http://127.0.0.1:{port}/console/login/",
        data={
            "username": OPERATOR,
            "password": PASSWORD,
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
        },
        allow_redirects=False,
        timeout=10,
    )
    if response.status_code != 302:
        raise SystemExit(f"console login failed: {response.status_code}")
    return f"sessionid={browser.cookies['sessionid']}"


def page_get(port: int, path: str, cookie: str) -> tuple[int, float, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.monotonic()
    connection.request("GET", path, headers={"Cookie": cookie})
    response = connection.getresponse()
    body = response.read()
    elapsed_ms = (time.monotonic() - started) * 1000
    connection.close()
    return response.status, elapsed_ms, body.decode(errors="replace")


def measure(args, env) -> dict:
    devices, keys = reset_state()
    fill(args.readings, args.dead_letters)
    operator_create()
    primary_env = {**env, "DATABASE_REPLICA_URL": "", "LOG_LEVEL": "WARNING"}
    replica_env = {**primary_env, "DATABASE_REPLICA_URL": env["DATABASE_REPLICA_URL"]}
    ingest_web = production_web(primary_env, args.web_workers, PORT)
    worker = start([PYTHON, "manage.py", "consume_queue"], primary_env)
    consoles = {
        "replica": production_web(replica_env, args.console_workers, PORT + 1),
        "primary": production_web(primary_env, args.console_workers, PORT + 2),
    }
    ports = {"replica": PORT + 1, "primary": PORT + 2}
    stop_event = threading.Event()
    accepted: list[int] = []
    statuses: dict[int, int] = {}
    page_ms: dict[tuple[str, str], list[float]] = {}
    page_statuses: dict[str, dict[int, int]] = {"replica": {}, "primary": {}}
    lag_seconds: list[float] = []
    lag_bytes: list[int] = []
    fallbacks = {"replica_overviews_reading_primary": 0}
    lock = threading.Lock()

    def ingest_client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        key = keys[number % len(keys)]
        sent = 0
        while not stop_event.is_set():
            status = ingest_post(connection, readings_body(args.batch, number * 10_000_000 + sent), key)
            sent += args.batch
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 202:
                    accepted.append(args.batch)

    def lag_sampler() -> None:
        from django.db import connections

        from config.replica import replica_status_read

        while not stop_event.is_set():
            status = replica_status_read()
            if status.lag_seconds is not None:
                lag_seconds.append(status.lag_seconds)
            if status.lag_bytes is not None:
                lag_bytes.append(status.lag_bytes)
            time.sleep(0.25)
        connections.close_all()

    cookie = console_login(ports["replica"])
    for _ in range(3):  # warm both consoles (imports, connections, templates)
        for port in ports.values():
            for path in PAGES.values():
                page_get(port, path, cookie)
    ingest_threads = [threading.Thread(target=ingest_client, args=(n,)) for n in range(args.clients)]
    sampler = threading.Thread(target=lag_sampler)
    try:
        for thread in [*ingest_threads, sampler]:
            thread.start()
        time.sleep(args.ramp)  # ingest at speed before the console is timed
        deadline = time.monotonic() + args.seconds
        ingest_started = time.monotonic()
        accepted_before = sum(accepted)
        while time.monotonic() < deadline:
            for name, path in PAGES.items():
                for database, port in ports.items():
                    status, elapsed_ms, body = page_get(port, path, cookie)
                    page_ms.setdefault((name, database), []).append(elapsed_ms)
                    counts = page_statuses[database]
                    counts[status] = counts.get(status, 0) + 1
                    if database == "replica" and name == "overview" and "read from the primary" in body:
                        fallbacks["replica_overviews_reading_primary"] += 1
        ingest_seconds = time.monotonic() - ingest_started
        readings_accepted = sum(accepted) - accepted_before
    finally:
        stop_event.set()
        for thread in [*ingest_threads, sampler]:
            thread.join(timeout=60)
        for process in [*consoles.values(), ingest_web, worker]:
            stop(process)
    return {
        "pages_ms": {
            name: {
                database: {
                    "requests": len(page_ms[(name, database)]),
                    "p50": round(percentile(page_ms[(name, database)], 0.5), 1),
                    "p95": round(percentile(page_ms[(name, database)], 0.95), 1),
                }
                for database in ports
            }
            for name in PAGES
        },
        "page_statuses": {
            database: {str(k): v for k, v in counts.items()} for database, counts in page_statuses.items()
        },
        **fallbacks,
        "lag_seconds": {
            "samples": len(lag_seconds),
            "p95": round(percentile(lag_seconds, 0.95), 3),
            "max": round(max(lag_seconds, default=float("nan")), 3),
        },
        "lag_bytes": {
            "samples": len(lag_bytes),
            "p95": int(percentile(lag_bytes, 0.95)) if lag_bytes else None,
            "max": max(lag_bytes, default=None),
        },
        "ingest": {
            "clients": args.clients,
            "batch": args.batch,
            "statuses": {str(k): v for k, v in statuses.items()},
            "readings_accepted_per_s": round(readings_accepted / ingest_seconds),
        },
    }


def print_table(result: dict) -> None:
    print(f"{'page':<18}{'database':<10}{'requests':>10}{'p50 ms':>10}{'p95 ms':>10}")
    for name, by_database in result["pages_ms"].items():
        for database, figures in by_database.items():
            print(
                f"{name:<18}{database:<10}{figures['requests']:>10}{figures['p50']:>10}{figures['p95']:>10}"
            )
    lag, lag_bytes = result["lag_seconds"], result["lag_bytes"]
    print(
        f"replication lag: p95 {lag['p95']} s, max {lag['max']} s ({lag['samples']} samples);"
        f" bytes p95 {lag_bytes['p95']}, max {lag_bytes['max']}"
    )
    ingest = result["ingest"]
    print(
        f"ingest meanwhile: {ingest['readings_accepted_per_s']:,} readings/s accepted"
        f" ({ingest['clients']} clients x {ingest['batch']}), statuses {ingest['statuses']}"
    )
    print(
        f"page statuses: {result['page_statuses']}; replica overviews that read the primary:"
        f" {result['replica_overviews_reading_primary']}; load average {result['load_average_1m']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30, help="how long the console is timed")
    parser.add_argument("--ramp", type=float, default=3, help="ingest before timing starts")
    parser.add_argument("--clients", type=int, default=4, help="ingest HTTP clients")
    parser.add_argument("--batch", type=int, default=200, help="readings per ingest request")
    parser.add_argument("--readings", type=int, default=300_000, help="readings filled before the run")
    parser.add_argument("--dead-letters", type=int, default=5_000)
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers of the ingest web")
    parser.add_argument("--console-workers", type=int, default=1, help="gunicorn workers of each console")
    parser.add_argument("--keep-cluster", action="store_true", help="stop the cluster but keep its data")
    args = parser.parse_args()

    try:
        urls = dict(line.split("=", 1) for line in cluster("start").split())
        # The bench database is the cluster's application database, on the primary.
        os.environ["DATABASE_URL"] = urls["DATABASE_URL"]
        env = bench_setup(DATABASE_REPLICA_URL=urls["DATABASE_REPLICA_URL"])
        result = measure(args, env)
    finally:
        cluster("stop", *([] if args.keep_cluster else ["--purge"]))
    result = {
        "command": shlex.join([sys.argv[0], *sys.argv[1:]]),
        "cpus": os.cpu_count(),
        # Other work on the host skews every figure: the 1-minute load when the run ended.
        "load_average_1m": round(os.getloadavg()[0], 2),
        **result,
    }
    print_table(result)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {REPORT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
