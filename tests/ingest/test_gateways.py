"""Gateways relaying their household's devices: accepted, refused, stored under the real device."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from core.errors import ApplicationError
from ingest.messages import DeviceBatch, UndecodableMessage, message_decode
from ingest.models import (
    DeadLetter,
    Device,
    DeviceEvent,
    DeviceStatus,
    DeviceType,
    IngestMessage,
    SensorReading,
)
from ingest.record_validation import DeviceRecordsSerializer
from ingest.relaying import NO_HOUSEHOLD, NOT_A_GATEWAY, NOT_IN_HOUSEHOLD, not_active
from ingest.services.dead_letters import dead_letter_edit_preview
from ingest.services.devices import device_key_issue
from tests.broker import publish_raw, queue_depth, queued_messages
from tests.factories import (
    DeadLetterFactory,
    DeviceFactory,
    IngestMessageFactory,
    ResidentFactory,
    UserFactory,
)
from tests.workers import wait_until, worker_thread

URL = "/api/v1/ingest/"


def _now_iso(minutes_ago: int = 1) -> str:
    return (timezone.now() - timedelta(minutes=minutes_ago)).isoformat()


def _reading(device: str | None = None, *, metric: str = "heart_rate", minutes_ago: int = 1, **extra) -> dict:
    reading = {"metric": metric, "value": 72.0, "unit": "bpm", "measured_at": _now_iso(minutes_ago), **extra}
    if device is not None:
        reading["device"] = device
    return reading


def _event(device: str | None = None, **extra) -> dict:
    event = {"event_type": "door_opened", "severity": 1, "occurred_at": _now_iso(), **extra}
    if device is not None:
        event["device"] = device
    return event


def _client_for(device) -> APIClient:
    _, key = device_key_issue(device=device)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def _post(client: APIClient, body: dict):
    return client.post(URL, data=json.dumps(body), content_type="application/json")


def _household() -> dict:
    """A resident's gateway and two of their sensors."""
    resident = ResidentFactory()
    return {
        "gateway": DeviceFactory(resident=resident, device_type=DeviceType.GATEWAY, serial_no="GW-0001"),
        "motion": DeviceFactory(resident=resident, device_type=DeviceType.MOTION, serial_no="MOT-0001"),
        "door": DeviceFactory(resident=resident, device_type=DeviceType.DOOR, serial_no="DOOR-0001"),
    }


@pytest.fixture
def household(db):
    """The household, and a neighbour's sensor."""
    return {
        **_household(),
        "neighbours": DeviceFactory(device_type=DeviceType.MOTION, serial_no="MOT-NEXT-DOOR"),
    }


# --- accepting ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_gateway_queues_its_households_records_as_its_own_message(household, ingest_queue):
    gateway, motion, door = household["gateway"], household["motion"], household["door"]
    response = _post(
        _client_for(gateway),
        {
            "readings": [_reading(), _reading("MOT-0001", metric="temperature"), _reading("GW-0001")],
            "events": [_event("DOOR-0001")],
        },
    )

    assert response.status_code == 202, response.json()
    [(properties, body)] = queued_messages(ingest_queue.queue)
    batch = message_decode(body)
    assert str(batch.message_id) == response.json()["id"] == properties.message_id
    assert batch.device_id == gateway.id  # the sender
    assert batch.relayed_device_ids == {motion.id, door.id}
    assert [reading.get("device_id") for reading in batch.readings] == [None, motion.id, None]
    assert batch.readings[1]["device"] == "MOT-0001"
    assert batch.events[0]["device_id"] == door.id


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("serial_no", "reason"),
    [
        ("MOT-NEXT-DOOR", NOT_IN_HOUSEHOLD),  # another household's device
        ("NO-SUCH-SERIAL", NOT_IN_HOUSEHOLD),
        ("MOT-0001", not_active(DeviceStatus.RETIRED)),
        ("DOOR-0001", not_active(DeviceStatus.INACTIVE)),
        ("", "Must be a device's serial number: a string of 1 to 64 characters."),
    ],
)
def test_a_record_for_a_device_outside_the_household_refuses_the_request(
    household, ingest_queue, serial_no, reason
):
    household["motion"].status = DeviceStatus.RETIRED
    household["motion"].save()
    household["door"].status = DeviceStatus.INACTIVE
    household["door"].save()

    response = _post(_client_for(household["gateway"]), {"readings": [_reading(), _reading(serial_no)]})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["fields"] == {"readings": {"1": {"device": [reason]}}}
    assert queue_depth(ingest_queue.queue) == 0


@pytest.mark.django_db
def test_a_device_that_is_not_a_gateway_may_not_name_any_device(household, ingest_queue):
    motion = household["motion"]
    response = _post(
        _client_for(motion), {"readings": [_reading("DOOR-0001"), _reading("MOT-0001", minutes_ago=2)]}
    )

    assert response.status_code == 400
    assert response.json()["fields"] == {
        "readings": {"0": {"device": [NOT_A_GATEWAY]}, "1": {"device": [NOT_A_GATEWAY]}}
    }
    assert queue_depth(ingest_queue.queue) == 0


@pytest.mark.django_db
def test_every_bad_record_is_named_with_the_other_field_errors(household, ingest_queue):
    body = {
        "readings": [
            _reading("MOT-0001"),
            _reading("MOT-NEXT-DOOR"),
            _reading("MOT-0001", measured_at="yesterday"),
            _reading("NO-SUCH-SERIAL", minutes_ago=3),
        ],
        "events": [_event("DOOR-0001"), _event("MOT-NEXT-DOOR")],
    }
    response = _post(_client_for(household["gateway"]), body)

    assert response.status_code == 400
    fields = response.json()["fields"]
    assert set(fields["readings"]) == {"1", "2", "3"}
    assert fields["readings"]["1"] == {"device": [NOT_IN_HOUSEHOLD]}
    assert set(fields["readings"]["2"]) == {"measured_at"}
    assert fields["readings"]["3"] == {"device": [NOT_IN_HOUSEHOLD]}
    assert fields["events"] == {"1": {"device": [NOT_IN_HOUSEHOLD]}}
    assert queue_depth(ingest_queue.queue) == 0


@pytest.mark.django_db
def test_a_gateway_without_a_resident_relays_for_nobody(ingest_queue):
    gateway = DeviceFactory(resident=None, device_type=DeviceType.GATEWAY)
    DeviceFactory(resident=None, serial_no="LOOSE-1")

    response = _post(_client_for(gateway), {"readings": [_reading("LOOSE-1")]})

    assert response.status_code == 400
    assert response.json()["fields"] == {"readings": {"0": {"device": [NO_HOUSEHOLD]}}}


@pytest.mark.django_db
def test_all_serials_of_a_request_are_resolved_in_one_query(household, django_assert_num_queries):
    records = {
        "readings": [
            _reading(serial, minutes_ago=n) for n, serial in enumerate(["MOT-0001", "DOOR-0001"] * 50)
        ],
        "events": [_event("DOOR-0001"), _event("MOT-NEXT-DOOR")],
    }
    with django_assert_num_queries(1):
        serializer = DeviceRecordsSerializer(data=records, context={"device": household["gateway"]})
        assert not serializer.is_valid()
    assert serializer.errors == {"events": {1: {"device": [NOT_IN_HOUSEHOLD]}}}


@pytest.mark.django_db
def test_a_gateway_that_moved_house_relays_for_its_new_household_only(household):
    gateway = household["gateway"]
    stale_copy = Device.objects.get(pk=gateway.pk)  # as a web process may hold it in its key cache
    new_home = ResidentFactory()
    Device.objects.filter(pk=gateway.pk).update(resident=new_home)
    DeviceFactory(resident=new_home, serial_no="NEW-HOME-1")

    records = {"readings": [_reading("MOT-0001"), _reading("NEW-HOME-1")]}
    serializer = DeviceRecordsSerializer(data=records, context={"device": stale_copy})

    assert not serializer.is_valid()
    assert serializer.errors == {"readings": {0: {"device": [NOT_IN_HOUSEHOLD]}}}


def test_a_serializer_without_a_sender_refuses_named_devices():
    serializer = DeviceRecordsSerializer(data={"readings": [_reading("MOT-0001")]})
    assert not serializer.is_valid()
    assert serializer.errors == {"readings": {0: {"device": [NOT_A_GATEWAY]}}}


def test_a_message_from_before_gateways_still_decodes_as_the_senders():
    body = json.dumps(
        {
            "schema_version": 1,
            "kind": "device_batch",
            "message_id": str(uuid.uuid4()),
            "device_id": 7,
            "accepted_at": timezone.now().isoformat(),
            "readings": [{"metric": "spo2", "value": 97, "unit": "%", "measured_at": _now_iso()}],
            "events": [],
        }
    ).encode()
    batch = message_decode(body)
    assert batch.device_id == 7
    assert batch.relayed_device_ids == frozenset()


def test_a_relayed_device_id_that_is_not_an_integer_is_undecodable():
    body = json.dumps(
        {
            "schema_version": 1,
            "kind": "device_batch",
            "message_id": str(uuid.uuid4()),
            "device_id": 7,
            "accepted_at": timezone.now().isoformat(),
            "readings": [{"metric": "spo2", "value": 97, "measured_at": _now_iso(), "device_id": "8"}],
            "events": [],
        }
    ).encode()
    with pytest.raises(UndecodableMessage, match="device_id"):
        message_decode(body)


# --- storing -----------------------------------------------------------------------------


@pytest.fixture
def committed_household(committed_db):
    return _household()


def test_relayed_records_are_stored_under_their_devices_and_the_ledger_names_the_gateway(
    committed_household, ingest_queue
):
    gateway, motion, door = (committed_household[name] for name in ("gateway", "motion", "door"))
    client = _client_for(gateway)
    response = _post(
        client,
        {
            "readings": [
                _reading(metric="battery"),
                _reading("MOT-0001"),
                _reading("DOOR-0001", metric="temp"),
            ],
            "events": [_event("DOOR-0001"), _event()],
        },
    )
    assert response.status_code == 202, response.json()
    message_id = response.json()["id"]

    with worker_thread(ingest_queue):
        assert wait_until(lambda: IngestMessage.objects.filter(status="processed").exists())

    assert sorted(SensorReading.objects.values_list("device_id", "metric")) == sorted(
        [(gateway.id, "battery"), (motion.id, "heart_rate"), (door.id, "temp")]
    )
    assert sorted(DeviceEvent.objects.values_list("device_id", flat=True)) == sorted([door.id, gateway.id])
    ledger = IngestMessage.objects.get(message_id=message_id)
    assert (ledger.device_id, ledger.relayed_devices, ledger.readings, ledger.events) == (gateway.id, 2, 3, 2)
    for device in (gateway, motion, door):
        device.refresh_from_db()
        assert device.last_seen_at is not None, device.serial_no
    # The gateway asks after its message as after any other.
    status = client.get(f"{URL}{message_id}/")
    assert status.status_code == 200
    assert status.json()["status"] == "processed"
    assert queue_depth(ingest_queue.queue) == 0


def test_a_relayed_device_deleted_before_the_store_fails_the_message_into_a_dead_letter(
    committed_household, ingest_queue
):
    gateway, motion = committed_household["gateway"], committed_household["motion"]
    response = _post(_client_for(gateway), {"readings": [_reading(), _reading("MOT-0001")]})
    assert response.status_code == 202
    message_id = response.json()["id"]
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM devices WHERE id = %s", [motion.id])

    with worker_thread(ingest_queue) as worker:
        assert wait_until(lambda: DeadLetter.objects.filter(message_id=message_id).exists(), timeout=30)
        assert worker.totals.retried >= 1

    assert not SensorReading.objects.exists()  # the gateway's own reading went with the message
    dead = DeadLetter.objects.get(message_id=message_id)
    assert dead.device_id == gateway.id
    assert "sensor_readings" in dead.error_message or "devices" in dead.error_message
    ledger = IngestMessage.objects.get(message_id=message_id)
    assert ledger.status == IngestMessage.Status.PENDING
    assert (ledger.device_id, ledger.relayed_devices) == (gateway.id, 1)

    # The console says which gateway relayed it.
    operator = Client()
    operator.force_login(UserFactory(username="olivia", role="Console operators"))
    page = operator.get(f"/console/failed/{dead.pk}/").content.decode()
    assert "relayed by gateway GW-0001 for 1 device<" in page
    listed = operator.get("/console/failed/").content.decode()
    assert "gateway, relayed for 1 device<" in listed


def test_a_relayed_message_delivered_twice_is_stored_once(committed_household, ingest_queue):
    gateway, motion = committed_household["gateway"], committed_household["motion"]
    response = _post(_client_for(gateway), {"readings": [_reading("MOT-0001"), _reading("DOOR-0001")]})
    assert response.status_code == 202
    message_id = response.json()["id"]
    [(_, body)] = queued_messages(ingest_queue.queue)
    for _ in range(2):  # taken off the queue above: put back twice, as a duplicate publish would
        publish_raw(body, message_id)

    with worker_thread(ingest_queue):
        assert wait_until(lambda: queue_depth(ingest_queue.queue) == 0)
        assert wait_until(
            lambda: IngestMessage.objects.filter(message_id=message_id, duplicate_deliveries=1).exists()
        )

    assert SensorReading.objects.count() == 2
    assert SensorReading.objects.filter(device_id=motion.id).count() == 1
    ledger = IngestMessage.objects.get(message_id=message_id)
    assert (ledger.status, ledger.device_id, ledger.relayed_devices) == ("processed", gateway.id, 2)


# --- an operator's edit of a gateway's failed message ------------------------------------


def _dead_relayed_message(gateway, **records) -> DeadLetter:
    batch = DeviceBatch(
        message_id=uuid.uuid4(),
        device_id=gateway.id,
        accepted_at=timezone.now(),
        readings=records.get("readings", []),
        events=records.get("events", []),
    )
    return DeadLetterFactory(message_id=batch.message_id, device_id=gateway.id, body=batch.to_body())


@pytest.mark.django_db
def test_an_edit_of_a_gateways_message_checks_its_devices_again(household):
    gateway, motion = household["gateway"], household["motion"]
    reading = {**_reading(), "measured_at": timezone.now() - timedelta(minutes=1)}
    dead = _dead_relayed_message(
        gateway, readings=[{**reading, "device": "MOT-0001", "device_id": motion.id}]
    )
    original = json.loads(bytes(dead.body))

    fixed = {**original, "readings": [{**original["readings"][0], "value": 80}]}
    preview = dead_letter_edit_preview(dead_letter_id=dead.pk, edited_body=json.dumps(fixed), reason="typo")
    assert message_decode(preview.body).readings[0]["device_id"] == motion.id

    moved = {**original, "readings": [{**original["readings"][0], "device": "MOT-NEXT-DOOR"}]}
    with pytest.raises(ApplicationError) as refused:
        dead_letter_edit_preview(dead_letter_id=dead.pk, edited_body=json.dumps(moved), reason="move")
    assert refused.value.fields == {"readings": {0: {"device": [NOT_IN_HOUSEHOLD]}}}


@pytest.mark.django_db
def test_the_retries_page_says_a_waiting_message_is_a_gateways(household):
    IngestMessageFactory(
        device=household["gateway"],
        attempts=1,
        last_error="django.db.utils.IntegrityError: Key (device_id)=(5) is not present",
        last_failed_at=timezone.now(),
        retry_due_at=timezone.now() + timedelta(minutes=5),
        relayed_devices=2,
    )
    operator = Client()
    operator.force_login(UserFactory(username="olivia", role="Console operators"))
    page = operator.get("/console/retries/").content.decode()
    assert "gateway, relayed for 2 devices<" in page
