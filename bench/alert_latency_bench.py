#!/usr/bin/env python
"""Care SLA: from a device's POST of an SOS or fall to the alert on an already-open console.

Starts the production web command (``gunicorn -c gunicorn.conf.py``, as deploy/Procfile
runs it) and one ``consume_queue`` worker on a database and queues of its own, opens the
console's overview in Debian's Chromium (Playwright), then POSTs N critical events from a
device, one at a time at irregular intervals. For each it records the time from just
before the POST to the moment the page put the alert's banner on screen (the banner's
``data-shown-at``, taken by the page itself when it inserts it: the same clock as the
POST's, on one machine), and checks that the tab's title announced it. Prints p50, p95,
p99 and the worst.

    .venv/bin/python bench/alert_latency_bench.py              # 50 events
    .venv/bin/python bench/alert_latency_bench.py --events 200 --interval 0.5

BENCH_DATABASE_NAME, BENCH_QUEUE_NAME and BENCH_PORT move a run to a database, queues
and port of its own (defaults here: iot_care_alert_bench, bench-alerts, 8791).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("BENCH_DATABASE_NAME", "iot_care_alert_bench")
os.environ.setdefault("BENCH_QUEUE_NAME", "bench-alerts")
os.environ.setdefault("BENCH_PORT", "8791")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_bench import (  # noqa: E402
    BIN,
    PORT,
    PYTHON,
    bench_setup,
    ingest_post,
    percentile,
    reset_state,
    start,
    stop,
    wait_for_http,
)

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]
OPERATOR, PASSWORD = "bench-carer", "bench-carer-pw-1"
CRITICAL_EVENTS = ["sos", "fall_detected"]


def start_web(env: dict[str, str], workers: int):
    """The web command of deploy/Procfile: gunicorn with gunicorn.conf.py (gthread, 8 threads)."""
    process = start(
        [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "config.wsgi:application"],
        {**env, "GUNICORN_BIND": f"127.0.0.1:{PORT}", "GUNICORN_WORKERS": str(workers)},
    )
    wait_for_http(PORT, "/healthz", process, "gunicorn")
    return process


def carer_create() -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from dashboard.roles import OPERATORS

    user, _ = get_user_model().objects.get_or_create(username=OPERATOR, defaults={"is_staff": True})
    user.set_password(PASSWORD)
    user.save()
    user.groups.add(Group.objects.get(name=OPERATORS))


def resident_give(device_id: int) -> None:
    from ingest.models import Device, Resident

    resident = Resident.objects.filter(full_name="Bench Resident").first() or Resident.objects.create(
        full_name="Bench Resident", phone="+44 7700 900000"
    )
    Device.objects.filter(pk=device_id).update(resident=resident)


def critical_event_body(event_type: str) -> bytes:
    return json.dumps(
        {"events": [{"event_type": event_type, "severity": 3, "occurred_at": datetime.now(UTC).isoformat()}]}
    ).encode()


def measure(args) -> list[float]:
    from playwright.sync_api import sync_playwright

    devices, keys = reset_state()
    resident_give(devices[0])
    carer_create()
    base = f"http://127.0.0.1:{PORT}"
    latencies: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{base}/console/login/")
        page.fill("input[name=username]", OPERATOR)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/console/")
        time.sleep(1)  # the page's stream is connected
        device = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
        for number in range(1, args.events + 1):
            event_type = CRITICAL_EVENTS[number % 2]
            posted_at_ms = time.time() * 1000
            status = ingest_post(device, critical_event_body(event_type), keys[0])
            if status != 202:
                raise SystemExit(f"the device's POST got {status}")
            page.wait_for_function(
                "count => document.querySelectorAll('#live-alerts .live-alert').length >= count",
                arg=number,
                timeout=30_000,
            )
            shown_at_ms = float(page.get_attribute("#live-alerts .live-alert:first-child", "data-shown-at"))
            latencies.append(shown_at_ms - posted_at_ms)
            if not page.title().startswith(f"({number}) "):
                raise SystemExit(f"the title did not announce alert {number}: {page.title()!r}")
            # Irregular, so that posts do not fall into step with the stream's poll.
            time.sleep(random.uniform(args.interval * 0.5, args.interval * 1.5))
        browser.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--interval", type=float, default=1.0, help="mean seconds between events")
    parser.add_argument("--web-workers", type=int, default=2, help="as deploy/Procfile's default")
    args = parser.parse_args()

    env = bench_setup()
    web = start_web(env, args.web_workers)
    worker = start([PYTHON, "manage.py", "consume_queue"], env)
    try:
        latencies = measure(args)
    finally:
        stop(worker)
        stop(web)
    from django.conf import settings

    print(
        f"device POST -> alert on an open console, {len(latencies)} SOS/fall events, "
        f"gunicorn {args.web_workers} workers (gthread), 1 worker "
        f"(batch wait {settings.INGEST_BATCH_MAX_WAIT_SECONDS * 1000:.0f} ms), "
        f"stream poll {settings.ALERT_STREAM_POLL_SECONDS * 1000:.0f} ms:"
    )
    print(
        f"  p50 {statistics.median(latencies):.0f} ms, p95 {percentile(latencies, 0.95):.0f} ms, "
        f"p99 {percentile(latencies, 0.99):.0f} ms, max {max(latencies):.0f} ms"
    )


if __name__ == "__main__":
    main()
