#!/usr/bin/env python
"""Benchmark the console on large tables: page times (p50/p95) and a 100,000-message bulk requeue.

Fills the benchmark database (``iot_care_bench``, shared with ingest_bench.py) once with
10 million readings, 100,000 dead letters and some events and alerts, then:

* times each main console page N times in-process (Django test client: server time,
  no network), printing p50 and p95;
* F6, bulk requeue: runs ``run_console_jobs --once`` as its own process to requeue
  100,000 dead letters into the ``bench-ingest`` queue (at the configured
  ``CONSOLE_BULK_MAX_PER_SECOND`` unless ``--bulk-rate`` says otherwise), timing it,
  while the overview page is timed again to show the web tier is not held up. Its
  same-run baselines on the same rows: the broker alone (``publish_many_confirmed`` of
  the same 100,000 bodies, nothing else; just before the job) and the database alone
  (one plain SQL ``UPDATE`` of the same rows' status; just after). The queue is purged
  after each.

    .venv/bin/python bench/console_bench.py                    # fill if needed, then measure
    .venv/bin/python bench/console_bench.py --requeue-only     # F6 only
    .venv/bin/python bench/console_bench.py --readings 1000000 --dead-letters 20000
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_bench import BENCH_DB, ROOT, bench_setup  # noqa: E402


def fill(readings: int, dead_letters: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM devices WHERE serial_no LIKE 'CONSOLE-%%'", [])
        if cursor.fetchone()[0] < 200:
            cursor.execute(
                "INSERT INTO residents (full_name) SELECT 'Resident ' || n FROM generate_series(1, 100) n"
            )
            cursor.execute(
                """INSERT INTO devices (serial_no, device_type, resident_id)
                   SELECT 'CONSOLE-' || lpad(n::text, 4, '0'), (ARRAY['vital','motion','door','environment'])[1 + n %% 4],
                          (SELECT min(id) FROM residents) + n %% 100
                   FROM generate_series(1, 200) n ON CONFLICT DO NOTHING""",
                [],
            )
        cursor.execute("SELECT min(id), max(id) FROM devices WHERE serial_no LIKE 'CONSOLE-%%'", [])
        first_device, last_device = cursor.fetchone()
        devices = last_device - first_device + 1
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = 'sensor_readings'")
        present = max(0, cursor.fetchone()[0])
        if present < readings * 0.9:
            started = time.monotonic()
            print(f"filling {readings:,} readings ...", flush=True)
            cursor.execute(
                """INSERT INTO sensor_readings (device_id, metric, value, unit, measured_at)
                   SELECT %s + n %% %s, (ARRAY['heart_rate','spo2','temperature','humidity'])[1 + n %% 4],
                          60 + (n %% 40), 'u', now() - make_interval(secs => n)
                   FROM generate_series(1, %s) n ON CONFLICT DO NOTHING""",
                [first_device, devices, readings],
            )
            cursor.execute(
                """INSERT INTO device_events (device_id, event_type, severity, occurred_at, detail)
                   SELECT %s + n %% %s, (ARRAY['motion','door_opened','battery_low','fall_detected'])[1 + n %% 4],
                          n %% 4, now() - make_interval(secs => n * 7), '{}'::jsonb
                   FROM generate_series(1, %s) n""",
                [first_device, devices, readings // 100],
            )
            cursor.execute(
                """INSERT INTO alerts (device_id, resident_id, alert_type, message, status, created_at)
                   SELECT d.id, d.resident_id, 'fall_detected', 'Critical event from ' || d.serial_no,
                          (CASE WHEN n %% 50 = 0 THEN 'open' ELSE 'acknowledged' END)::alert_status,
                          now() - make_interval(mins => n)
                   FROM generate_series(1, 10000) n JOIN devices d ON d.id = %s + n %% %s""",
                [first_device, devices],
            )
            cursor.execute("ANALYZE sensor_readings; ANALYZE device_events; ANALYZE alerts")
            print(f"  done in {time.monotonic() - started:.0f} s", flush=True)
        reset_dead_letters(dead_letters, first_device, devices)


def reset_dead_letters(count: int, first_device: int, devices: int) -> None:
    """Exactly ``count`` dead letters in status dead (previous runs requeued them)."""
    from django.db import connection

    from ingest.services.dead_letters import error_fingerprint

    causes = [
        ("django.db.utils.IntegrityError", 'Key (device_id)=(<n>) is not present in table "devices".'),
        ("django.db.utils.DataError", "value too long for type character varying(<n>)"),
        ("ingest.messages.UndecodableMessage", "unknown schema version <n>"),
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE ingest_deadletteraction, ingest_deadletter, dashboard_bulkjob RESTART IDENTITY CASCADE"
        )
        started = time.monotonic()
        for index, (error_class, message) in enumerate(causes):
            fingerprint = error_fingerprint(error_class=error_class, error_message=message)
            cursor.execute(
                """INSERT INTO ingest_deadletter (message_id, kind, device_id, original_queue, original_routing_key,
                       headers, body, body_text, error_class, error_message, fingerprint, traceback, attempts,
                       first_failed_at, last_failed_at, status, recorded_at, updated_at, recording_error)
                   SELECT id, 'device_batch', %s + n %% %s, 'bench-ingest', 'bench-ingest', '{}'::jsonb,
                          convert_to(body, 'UTF8'), body, %s, replace(%s, '<n>', (n %% 997)::text), %s, 'Traceback ...', 5,
                          now() - make_interval(secs => n * 3), now() - make_interval(secs => n), 'dead', now(), now(), ''
                   FROM (SELECT n, gen_random_uuid() AS id FROM generate_series(1, %s) n) s,
                        LATERAL (SELECT json_build_object('schema_version', 1, 'kind', 'device_batch', 'message_id', s.id,
                                   'device_id', 900000 + n, 'accepted_at', now(),
                                   'readings', json_build_array(json_build_object('metric', 'heart_rate', 'value', 70,
                                   'unit', 'bpm', 'measured_at', now())), 'events', '[]'::json)::text AS body) b""",
                [
                    first_device,
                    devices,
                    error_class,
                    message,
                    fingerprint,
                    count // len(causes) + (index < count % len(causes)),
                ],
            )
        # As autovacuum would before anyone reads them (it is off on this machine): a freshly
        # filled table whose tuples carry no hint bits or visibility map is not what an
        # operator's page meets.
        cursor.execute("VACUUM ANALYZE ingest_deadletter")
    print(f"{count:,} dead letters ready in {time.monotonic() - started:.1f} s", flush=True)


def broker_alone_baseline() -> float:
    """The requeue's floor on the broker: the same bodies, published as it publishes them.

    The dead letters' bodies are read first (not timed), then published pipelined with
    confirms and nothing else; the caller purges the queue after.
    """
    from ingest.broker.publisher import publish_many_confirmed
    from ingest.models import DeadLetter
    from ingest.services.dead_letters import _requeue_message

    messages = [
        _requeue_message(pk, str(message_id), kind, bytes(body))
        for pk, message_id, kind, body in DeadLetter.objects.filter(status=DeadLetter.Status.DEAD)
        .order_by("pk")
        .values_list("pk", "message_id", "kind", "body")
    ]
    started = time.monotonic()
    confirmed, failure = publish_many_confirmed(messages)
    elapsed = time.monotonic() - started
    assert failure is None and len(confirmed) == len(messages), failure
    print(f"baseline, broker alone: {len(messages):,} published with confirms in {elapsed:.1f} s", flush=True)
    return elapsed


def database_alone_baseline() -> float:
    """The requeue's floor in the database: one plain UPDATE of the same rows' status.

    Run after the job (it sets the requeued rows back to dead), so that its dead row
    versions do not slow the job down.
    """
    from django.db import connection

    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ingest_deadletter SET status = 'dead', updated_at = now() WHERE status = 'requeued'"
        )
        updated = cursor.rowcount
    elapsed = time.monotonic() - started
    print(f"baseline, database alone: UPDATE of {updated:,} rows in {elapsed:.1f} s", flush=True)
    return elapsed


def time_pages(client, pages: dict[str, str], repeat: int) -> None:
    print(f"{'page':44} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for label, url in pages.items():
        timings = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        timings.sort()
        p95 = timings[max(0, int(len(timings) * 0.95) - 1)]
        print(f"{label:44} {statistics.median(timings):8.1f} {p95:8.1f} {timings[-1]:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readings", type=int, default=10_000_000)
    parser.add_argument("--dead-letters", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument(
        "--bulk-rate",
        type=float,
        default=None,
        help="CONSOLE_BULK_MAX_PER_SECOND for the job (default: the setting)",
    )
    parser.add_argument("--requeue-only", action="store_true", help="skip the page timings (F6 only)")
    args = parser.parse_args()

    env = bench_setup(DJANGO_ALLOWED_HOSTS="testserver,localhost")

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from ingest.broker.connection import open_connection
    from ingest.broker.topology import Topology, topology_declare
    from ingest.models import Alert, DeadLetter, Device, DeviceEvent

    fill(args.readings, args.dead_letters)
    user, _ = get_user_model().objects.get_or_create(
        username="bench-operator", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    device = Device.objects.filter(serial_no__startswith="CONSOLE-").first()
    quiet, _ = Device.objects.get_or_create(serial_no="CONSOLE-QUIET", defaults={"device_type": "door"})
    dead = DeadLetter.objects.order_by("-pk").first()
    event_id = DeviceEvent.objects.filter(device=device).values_list("pk", flat=True).first()
    alert_id = Alert.objects.order_by("-pk").values_list("pk", flat=True).first()
    deep = DeadLetter.objects.order_by("pk")[1000].pk
    pages = {
        "overview": "/console/",
        "overview panel (24 h)": "/console/overview/panel/?window=day",
        "failed messages (dead)": "/console/failed/?status=dead",
        "failed messages, search body/error": "/console/failed/?status=dead&q=schema+version+12",
        "failed messages, error class + device": f"/console/failed/?error_class=DataError&device={device.pk}",
        "failed messages, old page (keyset)": f"/console/failed/?before={deep}",
        "failure groups": "/console/failed/groups/",
        "failed message detail": f"/console/failed/{dead.pk}/",
        "readings": "/console/records/readings/",
        "readings by device": f"/console/records/readings/?device={device.serial_no}",
        "readings by device + metric": f"/console/records/readings/?device={device.serial_no}&metric=spo2",
        "readings of a device with none": "/console/records/readings/?device=CONSOLE-QUIET",
        "readings by resident": f"/console/records/readings/?resident={device.resident_id}",
        "readings, time range a week ago": "/console/records/readings/?since="
        + time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 7 * 86400))
        + "&until="
        + time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 7 * 86400 + 3600)),
        "device events by resident": f"/console/records/events/?resident={device.resident_id}",
        "alerts (open first)": "/console/alerts/",
        "alert page": f"/console/alerts/{alert_id}/",
        "devices": "/console/records/devices/",
        "device events (by occurrence)": "/console/records/events/",
        "resident page": f"/console/residents/{device.resident_id}/",
        "device page": f"/console/devices/{device.pk}/",
        "event page": f"/console/events/{event_id}/",
        "chart page, device": f"/console/charts/device/{device.pk}/",
        "chart data, device, 24 h": f"/console/charts/device/{device.pk}/data/",
        "chart data, device, 30 d": f"/console/charts/device/{device.pk}/data/?window=30d",
        "chart page, resident": f"/console/charts/resident/{device.resident_id}/",
        "chart data, resident, 7 d": f"/console/charts/resident/{device.resident_id}/data/?window=7d",
        "chart data, device with none": f"/console/charts/device/{quiet.pk}/data/",
        "retry tiers": "/console/retries/",
        "audit": "/console/audit/",
        "bulk jobs": "/console/jobs/",
    }
    if not args.requeue_only:
        time_pages(client, pages, args.repeat)

    # Bulk requeue of every dead letter, by the job runner in its own process.
    broker = open_connection()
    channel = broker.channel()
    topology = Topology.from_settings()
    topology_declare(channel=channel, topology=topology)
    channel.queue_purge(topology.queue)
    publish_alone = broker_alone_baseline()
    channel.queue_purge(topology.queue)
    planned_at = time.monotonic()
    response = client.post(
        "/console/failed/bulk/", {"action": "requeue", "scope": "filter", "status": "dead"}
    )
    assert response.status_code == 302, response.status_code
    plan_seconds = time.monotonic() - planned_at
    plan_page_at = time.monotonic()
    assert client.get(response["Location"]).status_code == 200
    plan_page_seconds = time.monotonic() - plan_page_at
    response = client.post(response["Location"] + "confirm/")
    assert response.status_code == 302 and "/console/jobs/" in response["Location"], response
    print(
        f"bulk plan of every dead letter: frozen in {plan_seconds * 1000:.0f} ms, "
        f"plan page {plan_page_seconds * 1000:.0f} ms"
    )
    bulk_rate = args.bulk_rate if args.bulk_rate is not None else settings.CONSOLE_BULK_MAX_PER_SECOND
    job_env = {**env, "CONSOLE_BULK_MAX_PER_SECOND": str(bulk_rate)}
    started = time.monotonic()
    runner = subprocess.Popen(
        [sys.executable, "manage.py", "run_console_jobs", "--once"], cwd=ROOT, env=job_env
    )
    during: list[float] = []

    def poll_overview() -> None:
        while runner.poll() is None:
            begun = time.perf_counter()
            client.get("/console/overview/panel/")
            during.append((time.perf_counter() - begun) * 1000)
            time.sleep(0.5)

    watcher = threading.Thread(target=poll_overview)
    watcher.start()
    runner.wait()
    watcher.join()
    elapsed = time.monotonic() - started
    from dashboard.models import BulkJob

    job = BulkJob.objects.latest("created_at")
    depth = channel.queue_declare(topology.queue, passive=True).method.message_count
    channel.queue_purge(topology.queue)
    broker.close()
    during.sort()
    update_alone = database_alone_baseline()
    in_job = (job.finished_at - job.started_at).total_seconds()
    print(
        f"bulk requeue: job {job.pk} {job.status}: {job.done:,} requeued, {job.skipped} skipped of {job.total:,} "
        f"in {in_job:.1f} s ({job.done / in_job:,.0f}/s, bound {bulk_rate:g}/s; {elapsed:.1f} s with the "
        f"runner's start-up); {depth:,} on the queue"
    )
    print(
        f"F6 bulk requeue of {job.total:,} dead letters: {in_job:.1f} s (target <= 10 s for 100,000); "
        f"same-run baselines on the same rows: broker alone (publish_many_confirmed) {publish_alone:.1f} s, "
        f"database alone (SQL UPDATE) {update_alone:.1f} s; job / broker alone = {in_job / publish_alone:.2f}x"
    )
    if during:
        print(
            f"  overview panel while it ran: p50 {statistics.median(during):.0f} ms, "
            f"p95 {during[max(0, int(len(during) * 0.95) - 1)]:.0f} ms over {len(during)} requests"
        )
    print(f"database: {BENCH_DB}")


if __name__ == "__main__":
    main()
