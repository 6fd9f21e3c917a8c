"""Request and message ids in logs, JSON logs, the /metrics endpoint."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from config.observability import ContextFilter, JsonFormatter, message_context, request_id_var
from ingest.services.devices import device_key_issue
from ingest.worker import IngestWorker
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db


def _metric(content: str, name: str, labels: str = "") -> float:
    for line in content.splitlines():
        if line.startswith(f"{name}{labels} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_request_id_is_echoed_or_made_up(client):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-123").headers["X-Request-ID"] == "abc-123"
    made_up = client.get("/healthz", HTTP_X_REQUEST_ID="not ok; <script>").headers["X-Request-ID"]
    assert len(made_up) == 32 and made_up.isalnum()


def test_json_log_lines_carry_request_and_message_ids():
    record = logging.LogRecord("ingest.worker", logging.INFO, __file__, 1, "stored %d", (3,), None)
    token = request_id_var.set("req-1")
    try:
        with message_context("m-1..m-3"):
            ContextFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert (line["message"], line["request_id"], line["message_id"], line["level"]) == (
        "stored 3",
        "req-1",
        "m-1..m-3",
        "INFO",
    )


def test_metrics_are_not_public(client, settings):
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    settings.METRICS_TOKEN = "scrape-token"
    assert client.get("/metrics").status_code == 403  # loopback is not enough once a token is set
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token").status_code == 200


def test_metrics_count_requests_publishing_and_queue_depth(client, ingest_queue):
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    before = client.get("/metrics").content.decode()
    body = {
        "readings": [
            {"metric": "hr", "value": 60, "measured_at": (timezone.now() - timedelta(minutes=1)).isoformat()}
        ]
    }
    assert api.post("/api/v1/ingest/", body, format="json").status_code == 202
    assert APIClient().post("/api/v1/ingest/", body, format="json").status_code == 401
    assert api.post("/api/v1/ingest/", {"readings": []}, format="json").status_code == 400

    after = client.get("/metrics").content.decode()
    for labels in ('{outcome="accepted"}', '{outcome="not_authenticated"}', '{outcome="invalid"}'):
        assert (
            _metric(after, "iot_care_ingest_requests_total", labels)
            == _metric(before, "iot_care_ingest_requests_total", labels) + 1
        ), labels
    assert _metric(after, "iot_care_messages_published_total", '{kind="device_batch"}') >= 1
    assert f'iot_care_queue_messages_ready{{queue="{ingest_queue.queue}",role="main"}} 1.0' in after


@pytest.mark.usefixtures("committed_db")
def test_metrics_count_consumed_messages_and_rows(client, ingest_queue):
    from ingest.services.ingestion import device_batch_accept

    before = client.get("/metrics").content.decode()
    device_batch_accept(
        device=DeviceFactory(),
        readings=[{"metric": "hr", "value": 1.0, "measured_at": timezone.now()}],
        events=[],
    )
    IngestWorker(topology=ingest_queue, batch_max_wait=0.05).run(stop_when_idle=True)
    after = client.get("/metrics").content.decode()
    stored = '{result="stored"}'
    assert (
        _metric(after, "iot_care_messages_consumed_total", stored)
        == _metric(before, "iot_care_messages_consumed_total", stored) + 1
    )
    rows = '{table="sensor_readings"}'
    assert (
        _metric(after, "iot_care_rows_inserted_total", rows)
        == _metric(before, "iot_care_rows_inserted_total", rows) + 1
    )
    assert _metric(after, "iot_care_batch_seconds_count") > _metric(before, "iot_care_batch_seconds_count")


@pytest.mark.usefixtures("committed_db")
def test_a_worker_serves_its_own_metrics_when_asked(ingest_queue):
    import socket
    import urllib.request

    from tests.workers import start_worker_process, stop_worker_process, wait_until

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    worker = start_worker_process(ingest_queue, "--metrics-port", str(port))

    def scraped() -> str:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            return ""

    try:
        assert wait_until(lambda: "iot_care_messages_consumed_total" in scraped(), timeout=20)
    finally:
        returncode, output = stop_worker_process(worker)
    assert returncode == 0, output


@pytest.mark.usefixtures("committed_db")
@pytest.mark.parametrize(("address", "reachable_elsewhere"), [(None, False), ("0.0.0.0", True)])
def test_a_workers_metrics_listen_on_loopback_unless_told_otherwise(
    ingest_queue, address, reachable_elsewhere
):
    """127.0.0.2 stands for "another interface": only a socket bound to every interface answers there."""
    import socket
    import urllib.request

    from tests.workers import start_command_process, stop_worker_process, wait_until

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    extra_env = {"WORKER_METRICS_ADDRESS": address} if address else {}
    worker = start_command_process(ingest_queue, "consume_queue", "--metrics-port", str(port), **extra_env)

    def answers(host: str) -> bool:
        try:
            return urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2).status == 200
        except OSError:
            return False

    try:
        assert wait_until(lambda: answers("127.0.0.1"), timeout=20)
        assert answers("127.0.0.2") is reachable_elsewhere
    finally:
        returncode, output = stop_worker_process(worker)
    assert returncode == 0, output


LOG_WRITER = """
import logging, os, sys
import django
django.setup()
logger = logging.getLogger("load")
for number in range(int(sys.argv[1])):
    logger.info("line %d of %d %s", number, os.getpid(), "x" * 400)
"""


def _rotate_like_logrotate(log_file, stop):
    """Move the file away now and then, as logrotate does (without copytruncate)."""
    generation = 0
    while not stop.is_set():
        time.sleep(0.05)
        if log_file.exists():
            generation += 1
            log_file.rename(log_file.with_name(f"{log_file.name}.{generation}"))


def test_many_processes_share_one_log_file_without_losing_a_line(tmp_path):
    """Four processes append to LOG_DIR's file, each beyond 10 MB, while it is rotated from
    outside: every line arrives once and whole (a rotating handler per process renames the
    file under the others and overwrites their backups)."""
    lines_per_process, processes = 25_000, 4
    env = {**os.environ, "LOG_DIR": str(tmp_path), "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", LOG_WRITER, str(lines_per_process)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]
    stop = threading.Event()
    rotator = threading.Thread(target=_rotate_like_logrotate, args=(tmp_path / "iot_care.log", stop))
    rotator.start()
    try:
        for writer in writers:
            assert writer.wait(timeout=120) == 0
    finally:
        stop.set()
        rotator.join()
    seen = Counter()
    for path in tmp_path.glob("iot_care.log*"):
        for line in path.read_text().splitlines():
            entry = json.loads(line)  # whole lines only, never two interleaved
            if entry["logger"] == "load":
                seen[(entry["process"], entry["message"].split(" ", 3)[1])] += 1
    assert len(seen) == processes * lines_per_process
    assert set(seen.values()) == {1}


def test_without_log_dir_logs_go_to_the_console_only():
    """Containers and systemd collect stdout/stderr: no file unless LOG_DIR asks for one."""
    script = "import django; django.setup(); from django.conf import settings; print(sorted(settings.LOGGING['handlers']))"
    env = {key: value for key, value in os.environ.items() if key not in ("LOG_DIR", "DJANGO_ENV_FILE")}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.prod"
    env.update(
        DJANGO_SECRET_KEY="k" * 50,
        RABBITMQ_PASSWORD="pw",
        DJANGO_ALLOWED_HOSTS="x",
        DATABASE_URL="postgres://x@db/x",
        CACHE_URL="redis://127.0.0.1:6379/0",
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "['console']", result.stderr


def test_gunicorn_writes_its_own_lines_as_json_too(ingest_queue, tmp_path):
    from tests.deploy.test_caddy import GUNICORN, free_port
    from tests.workers import PROJECT_ROOT, stop_worker_process, wait_until, worker_environment

    port = free_port()
    gunicorn = subprocess.Popen(
        [str(GUNICORN), "-c", "gunicorn.conf.py", "config.wsgi:application"],
        cwd=PROJECT_ROOT,
        env={
            **worker_environment(ingest_queue),
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "GUNICORN_WORKERS": "1",
            "LOG_FORMAT": "json",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def answered() -> bool:
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/healthz", headers={"X-Request-ID": "probe-1"}
            )
            return urllib.request.urlopen(request, timeout=2).status == 200
        except OSError:
            return False

    try:
        assert wait_until(answered, timeout=30)
    finally:
        _, output = stop_worker_process(gunicorn)
    entries = [json.loads(line) for line in output.splitlines() if line.strip()]  # every line is JSON
    assert any(
        entry["logger"] == "gunicorn.error" and "Listening at" in entry["message"] for entry in entries
    )
    access = [entry for entry in entries if entry["logger"] == "gunicorn.access"]
    assert access and access[-1]["request_id"] == "probe-1"
    assert access[-1]["http"]["path"] == "/healthz" and access[-1]["http"]["status"] == 200
