"""POST /api/v1/ingest/: validation, authentication and confirmed publishing."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from ingest.broker.publisher import publisher_reset
from ingest.messages import message_decode
from ingest.models import DeviceStatus
from ingest.services.devices import device_keys_revoke
from tests.broker import queue_depth, queued_messages

URL = "/api/v1/ingest/"
pytestmark = pytest.mark.django_db


def _now_iso(offset: timedelta = timedelta()) -> str:
    return (timezone.now() + offset).isoformat().replace("+00:00", "Z")


def _reading(**overrides) -> dict:
    return {"metric": "heart_rate", "value": 72.5, "unit": "bpm", "measured_at": _now_iso(), **overrides}


def _post(client: APIClient, body) -> object:
    return client.post(URL, data=json.dumps(body), content_type="application/json")


def test_accepted_readings_are_on_the_queue_as_a_persistent_message(device, device_client, ingest_queue):
    response = _post(device_client, {"readings": [_reading(), _reading(metric="spo2", value=97)]})

    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert response.json()["readings"] == 2 and response.json()["events"] == 0
    message_id = response.json()["id"]
    [(properties, body)] = queued_messages(ingest_queue.queue)
    assert properties.message_id == message_id
    assert properties.delivery_mode == 2
    assert properties.headers["schema_version"] == 1
    batch = message_decode(body)
    assert batch.message_id == uuid.UUID(message_id)
    assert batch.device_id == device.id
    assert [r["metric"] for r in batch.readings] == ["heart_rate", "spo2"]


def test_events_are_accepted_alongside_readings(device_client, ingest_queue):
    event = {
        "event_type": "fall_detected",
        "severity": 3,
        "occurred_at": _now_iso(),
        "detail": {"room": "bath"},
    }
    response = _post(device_client, {"readings": [_reading()], "events": [event]})
    assert response.status_code == 202
    assert response.json()["events"] == 1
    assert queue_depth(ingest_queue.queue) == 1


def test_bad_json_is_a_400_and_nothing_is_queued(device_client, ingest_queue):
    response = device_client.post(URL, data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert queue_depth(ingest_queue.queue) == 0


def test_missing_field_is_named_in_the_error(device_client, ingest_queue):
    reading = _reading()
    del reading["measured_at"]
    response = _post(device_client, {"readings": [_reading(), reading]})
    assert response.status_code == 400
    assert response.json()["fields"]["readings"]["1"]["measured_at"] == ["This field is required."]
    assert queue_depth(ingest_queue.queue) == 0


@pytest.mark.parametrize(
    ("reading", "field", "message_part"),
    [
        (_reading(metric="Heart Rate"), "metric", "lower-case"),
        (_reading(value="NaN"), "value", "JSON number"),
        (_reading(value=True), "value", "JSON number"),
        (_reading(unit="x" * 17), "unit", "16"),
        (_reading(measured_at="2026-11-23T07:00:00"), "measured_at", "time zone"),
        (_reading(measured_at=_now_iso(timedelta(hours=1))), "measured_at", "future"),
        (_reading(measured_at=_now_iso(-timedelta(days=31))), "measured_at", "days old"),
        (_reading(measured_at="yesterday"), "measured_at", "ISO 8601"),
        (_reading(unit=5), "unit", "string or null"),
        ({"value": 1, "measured_at": _now_iso()}, "metric", "required"),
    ],
)
def test_invalid_reading_fields_are_refused_with_field_and_reason(
    device_client, reading, field, message_part
):
    response = _post(device_client, {"readings": [reading]})
    assert response.status_code == 400
    [message] = response.json()["fields"]["readings"]["0"][field]
    assert message_part in message


def test_nan_literal_in_the_body_is_refused(device_client):
    body = '{"readings": [{"metric": "t", "value": NaN, "measured_at": "' + _now_iso() + '"}]}'
    response = device_client.post(URL, data=body, content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize("body", [{}, {"readings": []}, [1, 2]])
def test_a_request_without_records_is_refused(device_client, body):
    response = _post(device_client, body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_too_many_records_are_refused(device_client, settings):
    settings.INGEST_MAX_RECORDS = 3
    response = _post(device_client, {"readings": [_reading(value=i) for i in range(4)]})
    assert response.status_code == 400
    assert "At most 3 records" in response.json()["fields"]["non_field_errors"][0]


def test_a_body_over_the_limit_is_a_413(device_client, settings):
    settings.INGEST_MAX_BODY_BYTES = 200
    response = _post(device_client, {"readings": [_reading(value=i) for i in range(5)]})
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_a_body_that_is_not_json_is_a_415(device_client):
    response = device_client.post(URL, data="metric=heart_rate", content_type="text/plain")
    assert response.status_code == 415


def test_missing_key_is_a_401(ingest_queue):
    response = _post(APIClient(), {"readings": [_reading()]})
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"
    assert queue_depth(ingest_queue.queue) == 0


def test_unknown_key_is_a_401(device, ingest_queue):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Api-Key notakey.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    response = _post(client, {"readings": [_reading()]})
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_a_revoked_key_is_a_401(device, device_client):
    device_keys_revoke(device=device)
    assert _post(device_client, {"readings": [_reading()]}).status_code == 401


@pytest.mark.parametrize("status", [DeviceStatus.INACTIVE, DeviceStatus.RETIRED])
def test_an_inactive_or_retired_device_is_a_403(device, device_client, status, ingest_queue):
    device.status = status
    device.save(update_fields=["status"])
    response = _post(device_client, {"readings": [_reading()]})
    assert response.status_code == 403
    assert queue_depth(ingest_queue.queue) == 0


def test_broker_unreachable_is_a_503_never_a_202(device_client, settings, ingest_queue):
    broker_port = settings.RABBITMQ_PORT
    settings.RABBITMQ_PORT = 1  # nothing listens there
    publisher_reset()
    try:
        response = _post(device_client, {"readings": [_reading()]})
    finally:
        settings.RABBITMQ_PORT = broker_port
        publisher_reset()
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["code"] == "broker_unavailable"
    assert queue_depth(ingest_queue.queue) == 0


def test_a_reading_that_is_not_an_object_is_refused(device_client):
    response = _post(device_client, {"readings": [_reading(), "72.5"]})
    assert response.status_code == 400
    assert response.json()["fields"]["readings"] == {"1": {"non_field_errors": ["Must be a JSON object."]}}


def test_readings_must_be_a_list(device_client):
    response = _post(device_client, {"readings": {"metric": "heart_rate"}})
    assert response.status_code == 400
    assert response.json()["fields"]["readings"] == ["Must be a list of readings."]


@pytest.mark.parametrize(
    ("event", "field", "message_part"),
    [
        ({"event_type": "Fall!", "occurred_at": _now_iso()}, "event_type", "lower-case"),
        (
            {"event_type": "fall", "severity": 4, "occurred_at": _now_iso()},
            "severity",
            "less than or equal to 3",
        ),
        ({"event_type": "fall", "occurred_at": "2026-11-23T07:00:00"}, "occurred_at", "time zone"),
        ({"event_type": "fall", "occurred_at": _now_iso(), "detail": ["bath"]}, "detail", "dictionary"),
        (
            {"event_type": "fall", "occurred_at": _now_iso(), "detail": {"x": "y" * 9000}},
            "detail",
            "8192 bytes",
        ),
    ],
)
def test_invalid_event_fields_are_refused_with_field_and_reason(device_client, event, field, message_part):
    response = _post(device_client, {"events": [event]})
    assert response.status_code == 400
    [message] = response.json()["fields"]["events"]["0"][field]
    assert message_part in message


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"readings": [_reading(value=10**400)]}, ("readings", "0", "value")),
        ({"readings": [_reading(unit="b\u0000pm")]}, ("readings", "0", "unit")),
        (
            {"events": [{"event_type": "fall", "occurred_at": _now_iso(), "detail": {"room": "ba\u0000th"}}]},
            ("events", "0", "detail"),
        ),
    ],
)
def test_values_postgresql_cannot_store_are_refused_up_front(device_client, body, path, ingest_queue):
    response = _post(device_client, body)
    assert response.status_code == 400
    fields = response.json()["fields"]
    for key in path:
        fields = fields[key]
    assert fields
    assert queue_depth(ingest_queue.queue) == 0
