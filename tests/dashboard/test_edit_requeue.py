"""Edit & requeue: an edit changes only the records, validated exactly as the ingest API does."""

from __future__ import annotations

import html
import json
import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from ingest.models import DeadLetter, IngestMessage, SensorReading
from ingest.mqtt.payloads import MQTT_PUBLISH
from ingest.services.devices import device_key_issue
from tests.broker import queue_depth
from tests.dashboard.edits import requeue_edited
from tests.factories import DeadLetterFactory, DeviceFactory
from tests.workers import wait_until, worker_thread

pytestmark = pytest.mark.django_db


def _assert_nothing_published(dead: DeadLetter, queue: str) -> None:
    dead.refresh_from_db()
    assert dead.status == DeadLetter.Status.DEAD
    assert not dead.actions.exists()
    assert queue_depth(queue) == 0


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("device_id", lambda body: {**body, "device_id": body["device_id"] + 1}),
        ("kind", lambda body: {**body, "kind": "webhook_event", "source": "acme", "payload": {}}),
        ("source", lambda body: {**body, "source": "acme"}),
        ("message_id", lambda body: {**body, "message_id": str(uuid.uuid4())}),
        ("accepted_at", lambda body: {**body, "accepted_at": "2026-01-01T00:00:00+00:00"}),
    ],
)
def test_an_edit_that_changes_whose_data_it_is_is_refused_naming_the_field(
    operator_client, ingest_queue, field, change
):
    dead = DeadLetterFactory()
    response = requeue_edited(operator_client, dead, change(json.loads(dead.body_text)))

    assert response.status_code == 400
    content = response.content.decode()
    assert f"<code>{field}</code>: Cannot be changed by an edit" in content
    _assert_nothing_published(dead, ingest_queue.queue)


def _api_field_errors(readings: list[dict]) -> dict:
    """What POST /api/v1/ingest/ answers for these readings (the reference the console must match)."""
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    response = client.post(
        "/api/v1/ingest/", data=json.dumps({"readings": readings}), content_type="application/json"
    )
    assert response.status_code == 400
    return response.json()["fields"]


@pytest.mark.parametrize(
    ("field", "reading_change"),
    [
        ("metric", {"metric": "HEART RATE <b>"}),
        ("measured_at", {"measured_at": "1999-06-01T07:00:00+00:00"}),
        ("value", {"value": "seventy"}),
    ],
)
def test_edited_records_get_the_ingest_apis_own_field_errors(
    operator_client, ingest_queue, field, reading_change
):
    dead = DeadLetterFactory()
    edited = json.loads(dead.body_text)
    edited["readings"][0].update(reading_change)
    [api_reason] = _api_field_errors(edited["readings"])["readings"]["0"][field]

    response = requeue_edited(operator_client, dead, edited)

    assert response.status_code == 400
    assert f"<code>readings.0.{field}</code>: {html.escape(api_reason)}" in response.content.decode()
    _assert_nothing_published(dead, ingest_queue.queue)


def test_a_refused_edit_shows_the_page_again_with_the_operators_body_and_reason(
    operator_client, ingest_queue
):
    dead = DeadLetterFactory()
    edited = json.loads(dead.body_text)
    edited["readings"][0]["metric"] = "HEART RATE <b>"
    edited["readings"][0]["value"] = 123.25
    edited_body = json.dumps(edited, indent=1)

    response = requeue_edited(operator_client, dead, edited_body, reason="sensor sent the wrong unit")

    assert response.status_code == 400
    content = response.content.decode()
    assert f">{html.escape(edited_body)}</textarea>" in content
    assert 'value="sensor sent the wrong unit"' in content
    assert "the ingest API would refuse them" in content
    _assert_nothing_published(dead, ingest_queue.queue)


@pytest.mark.parametrize(
    "damage",
    [
        lambda body: body.replace('"unit": "bpm"', '"unit": "bpm", "x": ' + "[" * 5000 + "]" * 5000, 1),
        lambda body: body.replace('"value": 70.0', '"value": NaN', 1),
    ],
    ids=["nested-5000-levels", "NaN"],
)
def test_an_edit_the_api_could_not_parse_is_refused_keeping_the_body(operator_client, ingest_queue, damage):
    """The edit is read by the API's own JSON reader: what the API would answer 400 to is a
    refused edit (never a 500, never requeued to fail again in the worker)."""
    dead = DeadLetterFactory()
    edited_body = damage(json.dumps(json.loads(dead.body_text)))
    assert edited_body != dead.body_text

    response = requeue_edited(operator_client, dead, edited_body, reason="fix it")

    assert response.status_code == 400
    content = response.content.decode()
    assert 'value="fix it"' in content
    assert "The body is not JSON" in content
    _assert_nothing_published(dead, ingest_queue.queue)


def test_an_edit_of_a_partners_webhook_event_is_refused(operator_client, ingest_queue):
    message_id = uuid.uuid4()
    body = {
        "schema_version": 1,
        "kind": "webhook_event",
        "message_id": str(message_id),
        "source": "acme",
        "event_type": "resident_moved",
        "payload": {"room": 3},
        "accepted_at": timezone.now().isoformat(),
    }
    dead = DeadLetterFactory(message_id=message_id, kind="webhook_event", body=json.dumps(body).encode())
    response = requeue_edited(operator_client, dead, {**body, "payload": {"room": 4}})
    assert response.status_code == 400
    assert "Only a device&#x27;s readings and events can be edited." in response.content.decode()
    _assert_nothing_published(dead, ingest_queue.queue)


@pytest.mark.usefixtures("committed_db")
def test_a_valid_edit_is_requeued_and_stored_by_the_worker(operator_client, ingest_queue):
    device = DeviceFactory()
    dead = DeadLetterFactory(device_id=device.id)
    IngestMessage.objects.create(
        message_id=dead.message_id, kind="device_batch", device=device, received_at=timezone.now()
    )
    edited = json.loads(dead.body_text)
    edited["readings"][0]["value"] = 71.5
    edited["readings"].append(
        {"metric": "spo2", "value": 97, "measured_at": (timezone.now() - timedelta(minutes=1)).isoformat()}
    )

    response = requeue_edited(operator_client, dead, edited)

    assert response.status_code == 302
    dead.refresh_from_db()
    assert dead.status == DeadLetter.Status.REQUEUED
    with worker_thread(ingest_queue):
        assert wait_until(lambda: SensorReading.objects.count() == 2)
    assert sorted(SensorReading.objects.values_list("device_id", "metric", "value")) == [
        (device.id, "heart_rate", 71.5),
        (device.id, "spo2", 97.0),
    ]
    assert IngestMessage.objects.get(message_id=dead.message_id).status == "processed"


def test_an_edit_the_broker_did_not_confirm_keeps_the_body_and_marks_nothing(
    operator_client, settings, ingest_queue
):
    from ingest.broker.publisher import publisher_reset

    dead = DeadLetterFactory()
    edited = json.loads(dead.body_text)
    edited["readings"][0]["value"] = 88.5
    broker_port = settings.RABBITMQ_PORT
    settings.RABBITMQ_PORT = 1
    publisher_reset()
    try:
        response = requeue_edited(operator_client, dead, json.dumps(edited), reason="after the outage")
    finally:
        settings.RABBITMQ_PORT = broker_port
        publisher_reset()

    assert response.status_code == 503
    content = response.content.decode()
    assert "did not confirm" in content
    assert html.escape(json.dumps(edited)) in content and 'value="after the outage"' in content
    _assert_nothing_published(dead, ingest_queue.queue)


def test_an_edited_event_gets_the_ingest_apis_field_error_with_its_index(operator_client, ingest_queue):
    dead = DeadLetterFactory()
    edited = json.loads(dead.body_text)
    good_event = {"event_type": "door_open", "occurred_at": timezone.now().isoformat()}
    edited["events"] = [good_event, {**good_event, "event_type": "Fall Detected!"}]
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    api = client.post(
        "/api/v1/ingest/", data=json.dumps({"events": edited["events"]}), content_type="application/json"
    )
    [api_reason] = api.json()["fields"]["events"]["1"]["event_type"]

    response = requeue_edited(operator_client, dead, edited)

    assert response.status_code == 400
    assert f"<code>events.1.event_type</code>: {html.escape(api_reason)}" in response.content.decode()
    _assert_nothing_published(dead, ingest_queue.queue)


# --- a device's refused MQTT publish ---------------------------------------------------


def _heart_rate(value) -> dict:
    """One reading as a device publishes it bare on its readings topic."""
    measured_at = timezone.now() - timedelta(minutes=1)
    return {"metric": "heart_rate", "value": value, "measured_at": measured_at.isoformat()}


def _refused_mqtt_publish(device, payload: dict) -> DeadLetter:
    body = json.dumps(payload).encode()
    return DeadLetterFactory(
        kind=MQTT_PUBLISH,
        body=body,
        original_queue="ingest.mqtt",
        original_routing_key=f"devices.{device.serial_no}.readings",
        error_class="ingest.mqtt.payloads.MqttPayloadRefused",
        error_message=json.dumps({"fields": {"readings": {"0": {"value": ["A valid number is required."]}}}}),
    )


def test_a_refused_mqtt_publish_is_offered_for_editing_as_the_devices_payload(operator_client):
    device = DeviceFactory()
    payload = _heart_rate("fast")
    dead = _refused_mqtt_publish(device, payload)

    page = operator_client.get(f"/console/failed/{dead.pk}/").content.decode()

    assert 'id="edit-form"' in page
    assert f"<code>devices.{device.serial_no}.readings</code>" in page
    textarea = re.search(r'<textarea id="edit-body"[^>]*>(.*?)</textarea>', page, re.S)
    assert json.loads(html.unescape(textarea[1])) == payload


def test_an_mqtt_payload_edit_gets_the_bridges_field_errors_and_sends_nothing(operator_client, ingest_queue):
    device = DeviceFactory()
    dead = _refused_mqtt_publish(device, _heart_rate("fast"))

    response = requeue_edited(operator_client, dead, _heart_rate("faster"))

    assert response.status_code == 400
    content = response.content.decode()
    assert "the MQTT bridge, like the ingest API, would refuse it" in content
    assert "readings.0.value" in content
    _assert_nothing_published(dead, ingest_queue.queue)


def test_an_mqtt_publish_whose_device_is_no_longer_active_cannot_be_edited(operator_client, ingest_queue):
    device = DeviceFactory(status="retired")
    dead = _refused_mqtt_publish(device, _heart_rate("fast"))

    response = requeue_edited(operator_client, dead, _heart_rate(70))

    assert response.status_code == 400
    assert "no active device publishes on" in html.unescape(response.content.decode())
    _assert_nothing_published(dead, ingest_queue.queue)


def test_an_mqtt_publish_is_not_requeued_where_mqtt_is_off(operator_client, settings, ingest_queue):
    settings.MQTT_ENABLED = False
    device = DeviceFactory()
    dead = _refused_mqtt_publish(device, _heart_rate("fast"))

    page = f"/console/failed/{dead.pk}/"

    response = operator_client.post(f"{page}requeue/", {"reason": "device fixed", "next": page}, follow=True)

    assert response.redirect_chain[-1][0] == page
    assert "MQTT is off here" in html.unescape(response.content.decode())
    _assert_nothing_published(dead, ingest_queue.queue)
