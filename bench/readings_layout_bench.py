#!/usr/bin/env python
"""Compare ``sensor_readings`` as the customer defines it with a time-partitioned copy.

Everything happens in a scratch database of its own (``iot_care_layout_bench``, dropped at
the end unless ``--keep``); the dev, test and bench databases are never touched, and the
customer's tables are never altered anywhere: the partitioned table is a copy beside them.

Three schemas in the scratch database, each with a table named ``sensor_readings``:

  plain        ``db/schema.sql`` executed as it is (all six tables, ``sensor_readings``
               exactly as the customer's).
  indexed      the customer's ``CREATE TABLE sensor_readings`` statement verbatim, plus one
               index ``(device_id, measured_at)``: what the index alone does.
  partitioned  the same columns, ``PARTITION BY RANGE (measured_at)`` (monthly, or weekly
               with ``--partition week``). A unique constraint on a partitioned table must
               contain the partition key: ``uq_sensor_readings_point (device_id, metric,
               measured_at)`` already does and stays as it is, but the primary key becomes
               ``(id, measured_at)``. Plus an index ``(device_id, measured_at)``; the plain
               ``(measured_at)`` index is left out (partition pruning does its work).
               Its foreign key points at ``plain.devices``.

All get the same ``--rows`` synthetic readings (``--devices`` devices, two metrics each,
spread evenly over ``--days`` days ending now), then it measures, on each:

  fill          one ``COPY`` of all rows (rows/s, WAL bytes per row)
  size          ``pg_total_relation_size`` per row (table + indexes + TOAST)
  worker insert ``--insert-rows`` new readings in transactions of ``--batch`` rows, through
                the worker's own two paths (``ingest/services/message_store.py``): binary
                ``COPY`` straight into the table, and the staging table + ``INSERT ...
                SELECT ... ON CONFLICT ON CONSTRAINT uq_sensor_readings_point DO NOTHING``
  latest 24 h   the readings of one device over 24 h, newest first (p50 / p95 of --queries)
  30-day agg    per metric and day over 30 days for one device (p50 / p95)
  retention     removing the oldest month: ``DELETE`` (then ``VACUUM``) against ``DETACH``
                + ``DROP`` of its partition(s): time, WAL, size and free space (pgstattuple)

The figures are printed as a table and written to reports/bench/readings_layout.json.

    .venv/bin/python bench/readings_layout_bench.py                   # 1.5 M rows, 4-6 minutes here
    .venv/bin/python bench/readings_layout_bench.py --rows 10000000   # more rows
    .venv/bin/python bench/readings_layout_bench.py --partition week --keep

``LAYOUT_BENCH_DATABASE`` (or ``--database``) names the scratch database; ``DATABASE_URL``
(from the environment or .env) only gives the server and credentials.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "reports/bench/readings_layout.json"
LAYOUTS = ("plain", "indexed", "partitioned")
# The one index the partitioned layout adds; "indexed" adds it to the unpartitioned table, so
# that what the index does and what the partitioning does are told apart.
DEVICE_TIME_INDEX = (
    "CREATE INDEX ix_sensor_readings_device_time ON {schema}.sensor_readings (device_id, measured_at)"
)
METRICS = (("heart_rate", "bpm"), ("temperature", "C"))
COPY_COLUMNS = "device_id, metric, value, unit, measured_at"
PGSTATTUPLE = [False]  # set once the scratch database has the extension


# --- the scratch database -------------------------------------------------------------------


def server_url() -> str:
    env_file = ROOT / ".env"
    if "DATABASE_URL" not in os.environ and env_file.exists():
        for line in env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "DATABASE_URL":
                return value
    return os.environ.get("DATABASE_URL", "postgres://iot_care:iot_care@127.0.0.1:5432/iot_care")


def database_url(base: str, name: str) -> str:
    return urlsplit(base)._replace(path=f"/{name}").geturl()


def scratch_create(base: str, name: str) -> bool:
    """Create the database; return whether pgstattuple (free space in a table) is there."""
    with psycopg.connect(database_url(base, "postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    # The extension needs a superuser: on a local trust setup that is "postgres".
    superuser = urlsplit(database_url(base, name))
    superuser = superuser._replace(netloc=f"postgres@{superuser.hostname}:{superuser.port or 5432}")
    try:
        with psycopg.connect(superuser.geturl(), autocommit=True) as admin:
            admin.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
            # In this database only: the bench's own user reads the free space.
            user = urlsplit(base).username or "postgres"
            admin.execute(f'GRANT EXECUTE ON FUNCTION pgstattuple(regclass) TO "{user}"')
    except psycopg.Error as error:
        print(f"no pgstattuple ({error.__class__.__name__}): free space is not measured", flush=True)
        return False
    return True


def scratch_drop(base: str, name: str) -> None:
    with psycopg.connect(database_url(base, "postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(moment: datetime) -> datetime:
    return month_start(month_start(moment) + timedelta(days=32))


def partition_bounds(first: datetime, last: datetime, unit: str) -> list[tuple[datetime, datetime]]:
    """Ranges covering [first, last] (plus the next one, as a maintenance job keeps ready)."""
    if unit == "month":
        start, step = month_start(first), next_month
    else:
        start = (first - timedelta(days=first.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)

        def step(moment: datetime) -> datetime:
            return moment + timedelta(days=7)

    bounds = []
    while start <= last:
        bounds.append((start, step(start)))
        start = step(start)
    bounds.append((start, step(start)))
    return bounds


def layouts_create(conn: psycopg.Connection, devices: int, bounds) -> list[int]:
    """Both schemas; return the device ids."""
    conn.execute("CREATE SCHEMA plain")
    conn.execute("SET search_path TO plain")
    conn.execute((ROOT / "db/schema.sql").read_text())
    # indexed: the customer's statement for the table, verbatim, plus the one index.
    readings_ddl = re.search(
        r"CREATE TABLE sensor_readings \(.*?\n\);", (ROOT / "db/schema.sql").read_text(), re.S
    )
    conn.execute("CREATE SCHEMA indexed")
    conn.execute("SET search_path TO indexed, plain")
    conn.execute(readings_ddl.group(0))
    conn.execute("CREATE INDEX ix_sensor_readings_measured ON indexed.sensor_readings (measured_at)")
    conn.execute(DEVICE_TIME_INDEX.format(schema="indexed"))
    conn.execute("CREATE SCHEMA partitioned")
    conn.execute(
        """
        CREATE TABLE partitioned.sensor_readings (
            id                 BIGINT GENERATED ALWAYS AS IDENTITY,
            device_id          BIGINT           NOT NULL REFERENCES plain.devices (id),
            metric             VARCHAR(32)      NOT NULL,
            value              DOUBLE PRECISION NOT NULL,
            unit               VARCHAR(16),
            measured_at        TIMESTAMPTZ      NOT NULL,
            received_at        TIMESTAMPTZ      NOT NULL DEFAULT now(),
            -- The partition key must be part of every unique constraint.
            CONSTRAINT sensor_readings_pkey PRIMARY KEY (id, measured_at),
            CONSTRAINT uq_sensor_readings_point UNIQUE (device_id, metric, measured_at)
        ) PARTITION BY RANGE (measured_at)
        """
    )
    conn.execute(DEVICE_TIME_INDEX.format(schema="partitioned"))
    for start, end in bounds:
        conn.execute(
            f"CREATE TABLE partitioned.sensor_readings_{start:%Y%m%d} PARTITION OF partitioned.sensor_readings "
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO plain.devices (serial_no, device_type) VALUES (%s, 'vital')",
            [(f"LAYOUT-{number:06d}",) for number in range(devices)],
        )
    conn.execute("RESET search_path")
    return [row[0] for row in conn.execute("SELECT id FROM plain.devices ORDER BY id")]


# --- rows -------------------------------------------------------------------------------------


def synthetic_rows(device_ids: list[int], rows: int, first: datetime, last: datetime):
    """``rows`` readings in time order: every device reports every metric at each tick."""
    per_tick = len(device_ids) * len(METRICS)
    ticks = max(1, rows // per_tick)
    interval = (last - first) / ticks
    produced = 0
    for tick in range(ticks):
        at = first + interval * tick
        for device_id in device_ids:
            for metric, unit in METRICS:
                yield (device_id, metric, 20.0 + (device_id * 7 + tick) % 80, unit, at)
                produced += 1


def wal_lsn(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])


def relation_bytes(conn: psycopg.Connection, layout: str) -> int:
    """Table + indexes + TOAST, summed over partitions for the partitioned layout."""
    return conn.execute(
        """
        SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname LIKE 'sensor_readings%%'
        """,
        [layout],
    ).fetchone()[0]


def table_stats(conn: psycopg.Connection, layout: str) -> dict:
    """Heap size, live rows and free/dead space of the readings heap(s) (pgstattuple)."""
    if not PGSTATTUPLE[0]:
        return {"total_bytes": relation_bytes(conn, layout)}
    rows = conn.execute(
        """
        SELECT s.table_len, s.tuple_count, s.dead_tuple_len, s.free_space
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
             LATERAL pgstattuple(c.oid) s
        WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname LIKE 'sensor_readings%%'
        """,
        [layout],
    ).fetchall()
    heap = sum(row[0] for row in rows)
    return {
        "heap_bytes": heap,
        "live_rows": sum(row[1] for row in rows),
        "dead_or_free_bytes": sum(row[2] + row[3] for row in rows),
        "total_bytes": relation_bytes(conn, layout),
    }


def fill(conn: psycopg.Connection, layout: str, rows) -> dict:
    wal_before = wal_lsn(conn)
    started = time.perf_counter()
    count = 0
    with conn.transaction(), conn.cursor() as cursor:
        with cursor.copy(
            f"COPY {layout}.sensor_readings ({COPY_COLUMNS}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "varchar", "float8", "varchar", "timestamptz"])
            for row in rows:
                copy.write_row(row)
                count += 1
    seconds = time.perf_counter() - started
    wal = wal_lsn(conn) - wal_before
    conn.execute(f"VACUUM ANALYZE {layout}.sensor_readings")
    total = relation_bytes(conn, layout)
    return {
        "rows": count,
        "seconds": round(seconds, 2),
        "rows_per_second": round(count / seconds),
        "wal_bytes_per_row": round(wal / count, 1),
        "total_bytes": total,
        "bytes_per_row": round(total / count, 1),
    }


# --- the worker's insert paths ------------------------------------------------------------------


def django_connection(url: str):
    """Django's connection to the scratch database, for the worker's own insert functions."""
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection

    return connection


def worker_inserts(connection, layout: str, device_ids: list[int], args, start: datetime) -> dict:
    """The worker's direct COPY and its staging + ON CONFLICT path, batch by batch.

    Fresh points from ``start`` on (after everything stored, in the newest partition, as
    live traffic is), then the staged path's rows once more: all duplicates.
    """
    from django.db import transaction

    from ingest.services.message_store import _readings_copy_direct, _readings_copy_staged

    with connection.cursor() as wrapper:
        wrapper.execute(f"SET search_path TO {layout}, plain")
    paths = (
        ("copy_direct", _readings_copy_direct, start),
        ("staging_on_conflict", _readings_copy_staged, start + timedelta(hours=1)),
        ("staging_all_duplicates", _readings_copy_staged, start + timedelta(hours=1)),
    )
    figures = {}
    for path, insert, first in paths:
        rows = list(synthetic_rows(device_ids, args.insert_rows, first, first + timedelta(minutes=50)))
        expected = 0 if path == "staging_all_duplicates" else None
        seconds = []
        for index in range(0, len(rows), args.batch):
            batch = rows[index : index + args.batch]
            started = time.perf_counter()
            with transaction.atomic(), connection.cursor() as wrapper:
                stored = insert(wrapper.cursor, batch)
            seconds.append(time.perf_counter() - started)
            assert stored == (len(batch) if expected is None else expected) or stored is True, (path, stored)
        figures[path] = {
            "rows_per_second": round(len(rows) / sum(seconds)),
            "batch_ms_p50": round(1000 * statistics.median(seconds), 2),
            "batch_ms_p95": round(1000 * percentile(seconds, 0.95), 2),
        }
    return figures


def median_of(rounds: list[dict]) -> dict:
    """Each number's median over the rounds (nested dicts alike; other values from the first)."""
    merged = {}
    for key, value in rounds[0].items():
        if isinstance(value, dict):
            merged[key] = median_of([round_[key] for round_ in rounds])
        elif isinstance(value, int | float):
            middle = statistics.median(round_[key] for round_ in rounds)
            merged[key] = round(middle) if isinstance(value, int) else round(middle, 2)
        else:
            merged[key] = value
    return merged


# --- queries --------------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


LATEST_24H = """
    SELECT metric, value, unit, measured_at FROM {layout}.sensor_readings
    WHERE device_id = %s AND measured_at > %s AND measured_at <= %s
    ORDER BY measured_at DESC
"""
AGGREGATE_30D = """
    SELECT metric, date_trunc('day', measured_at) AS day, avg(value), min(value), max(value), count(*)
    FROM {layout}.sensor_readings
    WHERE device_id = %s AND measured_at >= %s AND measured_at < %s
    GROUP BY metric, day ORDER BY metric, day
"""


def query_latencies(conn, sql: str, layout: str, params: list[tuple]) -> dict:
    statement = sql.format(layout=layout)
    seconds, rows = [], 0
    for values in params:
        started = time.perf_counter()
        rows += len(conn.execute(statement, values).fetchall())
        seconds.append(time.perf_counter() - started)
    plan = conn.execute("EXPLAIN (COSTS OFF) " + statement, params[0]).fetchall()
    return {
        "queries": len(params),
        "p50_ms": round(1000 * statistics.median(seconds), 2),
        "p95_ms": round(1000 * percentile(seconds, 0.95), 2),
        "rows_per_query": round(rows / len(params), 1),
        "plan": [line[0] for line in plan][:12],
    }


# --- retention ------------------------------------------------------------------------------------


def retention(conn, layout: str, bounds) -> dict:
    """Remove the oldest month: DELETE + VACUUM (unpartitioned) or DETACH + DROP (partitioned)."""
    cutoff = next_month(bounds[0][0])
    before = table_stats(conn, layout)
    wal_before = wal_lsn(conn)
    started = time.perf_counter()
    if layout != "partitioned":
        removed = conn.execute(
            f"DELETE FROM {layout}.sensor_readings WHERE measured_at < %s", [cutoff]
        ).rowcount
    else:
        old = [start for start, end in bounds if end <= cutoff]
        removed = conn.execute(
            f"SELECT count(*) FROM {layout}.sensor_readings WHERE measured_at < %s", [cutoff]
        ).fetchone()[0]
        started = time.perf_counter()  # the count is only for the report
        for start in old:
            name = f"{layout}.sensor_readings_{start:%Y%m%d}"
            conn.execute(f"ALTER TABLE {layout}.sensor_readings DETACH PARTITION {name} CONCURRENTLY")
            conn.execute(f"DROP TABLE {name}")
    remove_seconds = time.perf_counter() - started
    wal_remove = wal_lsn(conn) - wal_before
    after_remove = table_stats(conn, layout)
    started = time.perf_counter()
    conn.execute(f"VACUUM {layout}.sensor_readings")
    vacuum_seconds = time.perf_counter() - started
    after_vacuum = table_stats(conn, layout)
    return {
        "removed_rows": removed,
        "cutoff": cutoff.isoformat(),
        "remove_seconds": round(remove_seconds, 3),
        "remove_wal_bytes": wal_remove,
        "vacuum_seconds": round(vacuum_seconds, 3),
        "before": before,
        "after_remove": after_remove,
        "after_vacuum": after_vacuum,
    }


# --- the run --------------------------------------------------------------------------------------


def run(args) -> dict:
    base = server_url()
    url = database_url(base, args.database)
    now = datetime.now(UTC).replace(microsecond=0)
    # From the start of a month: the oldest partition is a whole month, as retention finds it.
    first, last = month_start(now - timedelta(days=args.days)), now - timedelta(hours=12)
    bounds = partition_bounds(first, now + timedelta(days=1), args.partition)
    PGSTATTUPLE[0] = scratch_create(base, args.database)
    report: dict = {
        "settings": {
            "rows": args.rows,
            "devices": args.devices,
            "metrics_per_device": len(METRICS),
            "days": args.days,
            "partition": args.partition,
            "partitions": len(bounds),
            "batch": args.batch,
            "repeat": args.repeat,
        }
    }
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            device_ids = layouts_create(conn, args.devices, bounds)
            rng = random.Random(7)
            query_ends = [
                (rng.choice(device_ids), now - timedelta(days=rng.uniform(1, args.days - 1)))
                for _ in range(args.queries)
            ]
            latest = [(device, end - timedelta(hours=24), end) for device, end in query_ends]
            aggregate_ends = [
                (device, max(end, first + timedelta(days=30)))
                for device, end in query_ends[: args.aggregates]
            ]
            aggregate = [(device, end - timedelta(days=30), end) for device, end in aggregate_ends]
            connection = django_connection(url)
            for layout in LAYOUTS:
                rows = synthetic_rows(device_ids, args.rows, first, last)
                report[layout] = {"fill_copy": fill(conn, layout, rows)}
                print(f"{layout}: filled {report[layout]['fill_copy']}", flush=True)
            # Rounds, the layouts' order alternating: the server's other load falls on both alike.
            rounds: dict[str, list[dict]] = {layout: [] for layout in LAYOUTS}
            for number in range(args.repeat):
                order = LAYOUTS if number % 2 == 0 else LAYOUTS[::-1]
                start = last + timedelta(hours=1 + 3 * number)
                figures = {layout: {} for layout in LAYOUTS}
                for layout in order:
                    inserts = worker_inserts(connection, layout, device_ids, args, start)
                    figures[layout]["worker_insert"] = inserts
                    print(f"{layout} round {number + 1}: {json.dumps(inserts)}", flush=True)
                for layout in order:
                    conn.execute(f"VACUUM ANALYZE {layout}.sensor_readings")
                # The queries of all layouts back to back, after every write and vacuum of the round.
                for layout in order:
                    query_latencies(conn, LATEST_24H, layout, latest[:20])  # the cache warmed alike
                    figures[layout]["latest_24h"] = query_latencies(conn, LATEST_24H, layout, latest)
                for layout in order:
                    figures[layout]["aggregate_30d"] = query_latencies(conn, AGGREGATE_30D, layout, aggregate)
                for layout in LAYOUTS:
                    rounds[layout].append(figures[layout])
            for layout in LAYOUTS:
                report[layout].update(median_of(rounds[layout]))
                report[layout]["retention_oldest_month"] = retention(conn, layout, bounds)
            connection.close()
    finally:
        if not args.keep:
            scratch_drop(base, args.database)
    return report


def print_table(report: dict) -> None:
    columns = [report[layout] for layout in LAYOUTS]

    def line(label: str, values, unit: str = "") -> None:
        cells = "".join(f"{value:>14,}" if isinstance(value, int) else f"{value:>14}" for value in values)
        print(f"  {label:38}{cells} {unit}")

    def mb(stage: str, key: str) -> list:
        return [round(column["retention_oldest_month"][stage].get(key, 0) / 2**20) for column in columns]

    settings = report["settings"]
    print(
        f"\nsensor_readings layouts: {settings['rows']:,} rows, {settings['devices']} devices x "
        f"{settings['metrics_per_device']} metrics over {settings['days']} days, "
        f"{settings['partitions']} {settings['partition']}ly partitions; medians of {settings['repeat']} rounds"
    )
    line("", LAYOUTS)
    line("fill: COPY rows/s", [column["fill_copy"]["rows_per_second"] for column in columns])
    line("fill: WAL bytes/row", [column["fill_copy"]["wal_bytes_per_row"] for column in columns])
    line("size: bytes/row (table+indexes)", [column["fill_copy"]["bytes_per_row"] for column in columns])
    for path in columns[0]["worker_insert"]:
        line(
            f"worker {path} rows/s", [column["worker_insert"][path]["rows_per_second"] for column in columns]
        )
    for name in ("latest_24h", "aggregate_30d"):
        for stat in ("p50_ms", "p95_ms"):
            line(f"{name} {stat}", [column[name][stat] for column in columns], "ms")
        line(f"{name} rows/query", [column[name]["rows_per_query"] for column in columns])
    retention = [column["retention_oldest_month"] for column in columns]
    line("retention: rows removed", [figures["removed_rows"] for figures in retention])
    line("retention: DELETE or DETACH+DROP s", [figures["remove_seconds"] for figures in retention], "s")
    line("retention: WAL bytes", [figures["remove_wal_bytes"] for figures in retention])
    line("retention: VACUUM s", [figures["vacuum_seconds"] for figures in retention], "s")
    for stage in ("before", "after_remove", "after_vacuum"):
        line(f"total MB {stage}", mb(stage, "total_bytes"))
    if "dead_or_free_bytes" in retention[0]["after_vacuum"]:
        for stage in ("after_remove", "after_vacuum"):
            line(f"heap dead+free MB {stage}", mb(stage, "dead_or_free_bytes"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_500_000, help="synthetic readings per layout")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--days", type=int, default=90, help="span of the readings, ending now")
    parser.add_argument("--partition", choices=["month", "week"], default="month")
    parser.add_argument(
        "--insert-rows", type=int, default=50_000, help="rows per worker insert path and round"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of worker inserts and queries (medians)"
    )
    parser.add_argument("--batch", type=int, default=1000, help="rows per worker transaction")
    parser.add_argument("--queries", type=int, default=200, help="latest-24 h queries")
    parser.add_argument("--aggregates", type=int, default=40, help="30-day aggregate queries")
    parser.add_argument(
        "--database", default=os.environ.get("LAYOUT_BENCH_DATABASE", "iot_care_layout_bench")
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    started = time.monotonic()
    report = run(args)
    report["runtime_seconds"] = round(time.monotonic() - started, 1)
    print_table(report)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\n  runtime {report['runtime_seconds']} s; written to {REPORT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
