"""A real HTTP request through the real broker into the real database."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from django.utils import timezone

from ingest.models import IngestMessage, SensorReading
from ingest.services.devices import device_key_issue
from ingest.worker import IngestWorker
from tests.broker import queue_depth
from tests.factories import DeviceFactory


def _post_json(url: str, body: dict, key: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Api-Key {key}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.usefixtures("committed_db")
def test_reading_posted_over_http_is_consumed_into_sensor_readings(live_server, ingest_queue):
    device = DeviceFactory(serial_no="E2E-0001")
    _, key = device_key_issue(device=device)
    measured_at = timezone.now().replace(microsecond=0)
    body = {
        "readings": [
            {"metric": "heart_rate", "value": 72.5, "unit": "bpm", "measured_at": measured_at.isoformat()}
        ]
    }

    status, answer = _post_json(f"{live_server.url}/api/v1/ingest/", body, key)

    assert status == 202, answer
    assert answer["status"] == "queued"
    assert SensorReading.objects.count() == 0  # the web tier never writes records
    assert queue_depth(ingest_queue.queue) == 1

    IngestWorker(topology=ingest_queue, batch_max_wait=0.05).run(stop_when_idle=True)

    reading = SensorReading.objects.get()
    assert (reading.device_id, reading.metric, reading.value, reading.unit, reading.measured_at) == (
        device.id,
        "heart_rate",
        72.5,
        "bpm",
        measured_at,
    )
    assert str(IngestMessage.objects.get(status="processed").message_id) == answer["id"]
    assert queue_depth(ingest_queue.queue) == 0


@pytest.mark.usefixtures("committed_db")
def test_wrong_key_over_http_is_refused_and_nothing_is_queued(live_server, ingest_queue):
    DeviceFactory()
    body = {"readings": [{"metric": "heart_rate", "value": 1, "measured_at": timezone.now().isoformat()}]}
    status, answer = _post_json(f"{live_server.url}/api/v1/ingest/", body, "wrong.key")
    assert status == 401
    assert answer["code"] == "authentication_failed"
    assert queue_depth(ingest_queue.queue) == 0


@pytest.mark.usefixtures("committed_db")
def test_database_down_is_a_503_not_a_500(live_server, ingest_queue):
    from tests.workers import database_unavailable

    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    body = {"readings": [{"metric": "heart_rate", "value": 1, "measured_at": timezone.now().isoformat()}]}
    assert (
        _post_json(f"{live_server.url}/api/v1/ingest/", body, key)[0] == 202
    )  # the server's connection exists
    with database_unavailable():
        status, answer = _post_json(f"{live_server.url}/api/v1/ingest/", body, key)
        try:
            urllib.request.urlopen(f"{live_server.url}/readyz", timeout=10)
            readiness = None
        except urllib.error.HTTPError as error:
            readiness = (error.code, json.loads(error.read()))
    assert readiness == (503, {"status": "unavailable", "unreachable": ["database"]})
    assert status == 503
    assert answer["code"] == "database_unavailable"
    assert queue_depth(ingest_queue.queue) == 1  # only the first one was queued
