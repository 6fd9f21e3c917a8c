"""Request and message ids in logs, JSON logs, the /metrics endpoint."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
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
