"""Records, alerts and devices in the console."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ingest.models import Alert, AlertStatus, Device, DeviceAPIKey, WebhookEvent
from tests.factories import AlertFactory, DeviceFactory, ResidentFactory, SensorReadingFactory

pytestmark = pytest.mark.django_db


def test_readings_are_newest_first_and_filtered_by_device_metric_resident_and_time(viewer_client):
    device = DeviceFactory(serial_no="VIT-1")
    other = DeviceFactory(serial_no="VIT-2")
    old = SensorReadingFactory(device=device, measured_at=timezone.now() - timedelta(days=2))
    recent = SensorReadingFactory(device=device, measured_at=timezone.now() - timedelta(minutes=10))
    spo2 = SensorReadingFactory(
        device=device, metric="spo2", measured_at=timezone.now() - timedelta(minutes=5)
    )
    SensorReadingFactory(device=other)

    def ids(query: str) -> list[int]:
        return [
            row.pk for row in viewer_client.get(f"/console/records/readings/?{query}").context["page"].rows
        ]

    assert ids("device=VIT-1") == [spo2.pk, recent.pk, old.pk]
    assert ids("device=VIT-1&metric=spo2") == [spo2.pk]
    assert ids(f"resident={device.resident_id}") == [spo2.pk, recent.pk, old.pk]
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert ids(f"device=VIT-1&since={since}") == [spo2.pk, recent.pk]


def test_record_lists_never_count_the_table(viewer_client):
    SensorReadingFactory.create_batch(60)
    with CaptureQueriesContext(connection) as queries:
        page = viewer_client.get("/console/records/readings/").context["page"]
    assert len(page.rows) == 50 and page.has_next
    assert not [query for query in queries if "COUNT(" in query["sql"].upper()]


def test_detail_pages_show_every_column(viewer_client):
    webhook_event = WebhookEvent.objects.create(source="acme", event_type="ping", payload={"a": 1})
    content = viewer_client.get(f"/console/records/webhook-events/{webhook_event.pk}/").content.decode()
    assert "acme" in content and "received at" in content
    assert viewer_client.get("/console/records/webhook-events/999999/").status_code == 404
    assert viewer_client.get("/console/records/nonsense/").status_code == 404


def test_open_alerts_come_first_and_can_be_acknowledged(operator_client):
    acknowledged = AlertFactory(status=AlertStatus.ACKNOWLEDGED)
    open_alert = AlertFactory()
    page = operator_client.get("/console/alerts/")
    assert [line.alert for line in page.context["open_lines"]] == [open_alert]
    assert acknowledged in page.context["page"].rows
    # the generic records address of alerts leads to their own pages
    assert operator_client.get("/console/records/alerts/")["Location"] == "/console/alerts/"
    assert operator_client.get(f"/console/records/alerts/{open_alert.pk}/")["Location"] == (
        f"/console/alerts/{open_alert.pk}/"
    )

    operator_client.post(f"/console/alerts/{open_alert.pk}/acknowledge/")

    open_alert.refresh_from_db()
    assert open_alert.status == AlertStatus.ACKNOWLEDGED
    assert open_alert.acknowledged_by == "olivia"
    assert open_alert.acknowledged_at is not None
    response = operator_client.post(f"/console/alerts/{open_alert.pk}/acknowledge/", follow=True)
    assert b"is not open" in response.content


def test_a_device_status_can_be_changed_by_an_operator(operator_client):
    device = DeviceFactory()
    operator_client.post(f"/console/devices/{device.pk}/status/", {"status": "inactive"})
    assert Device.objects.get(pk=device.pk).status == "inactive"
    response = operator_client.post(
        f"/console/devices/{device.pk}/status/", {"status": "melted"}, follow=True
    )
    assert b"unknown device status" in response.content


def test_a_new_key_is_shown_once_and_stored_hashed(operator_client):
    device = DeviceFactory()
    response = operator_client.post(
        f"/console/devices/{device.pk}/keys/issue/", {"name": "replacement"}, follow=True
    )
    key = response.context["key"]
    assert key.encode() in response.content
    stored = DeviceAPIKey.objects.get(device=device)
    assert stored.hashed_key != key and DeviceAPIKey.objects.get_from_key(key) == stored
    assert key.encode() not in operator_client.get(f"/console/devices/{device.pk}/").content
    assert key.encode() not in operator_client.get(response.redirect_chain[-1][0]).content


def test_revoke_makes_every_key_of_the_device_unusable(operator_client):
    device = DeviceFactory()
    key = operator_client.post(f"/console/devices/{device.pk}/keys/issue/", follow=True).context["key"]
    operator_client.post(f"/console/devices/{device.pk}/keys/revoke/")
    assert not DeviceAPIKey.objects.is_valid(key)


def test_records_other_than_alerts_and_devices_have_no_actions(operator_client):
    reading = SensorReadingFactory()
    content = operator_client.get(f"/console/records/readings/{reading.pk}/").content
    assert b"<button" not in content.split(b"<main")[1]
    assert Alert.objects.count() == 0


def test_every_console_action_is_in_the_audit_trail(operator_client, viewer_client, ingest_queue):
    from tests.factories import DeadLetterFactory

    alert = AlertFactory()
    device = DeviceFactory(serial_no="AUD-1")
    dead = DeadLetterFactory()
    operator_client.post(f"/console/alerts/{alert.pk}/acknowledge/")
    operator_client.post(f"/console/devices/{device.pk}/status/", {"status": "inactive"})
    operator_client.post(f"/console/devices/{device.pk}/keys/issue/")
    operator_client.post(f"/console/devices/{device.pk}/keys/revoke/")
    operator_client.post(f"/console/failed/{dead.pk}/discard/", {"reason": "duplicate test data"})
    operator_client.post(
        "/console/failed/bulk/", {"action": "requeue", "scope": "filter", "status": "dead"}, follow=True
    )

    lines = viewer_client.get("/console/audit/").context["page"].rows
    actions = [(line.actor, line.action) for line in lines]
    for expected in [
        "acknowledged alert",
        "changed device status",
        "issued device key",
        "revoked device keys",
        "discarded",
    ]:
        assert ("olivia", expected) in actions, expected
    assert any(line.detail == "active → inactive" for line in lines)
    assert any(line.detail == "duplicate test data" for line in lines)


@pytest.mark.parametrize("by_resident", [False, True])
def test_readings_page_by_measured_time_with_ties_each_row_once(viewer_client, by_resident):
    instant = timezone.now() - timedelta(minutes=5)
    resident = ResidentFactory()
    devices = DeviceFactory.create_batch(3, resident=resident)
    readings = [
        SensorReadingFactory(
            device=devices[n % 3],
            metric=("hr", "spo2")[n % 2],
            measured_at=instant - timedelta(seconds=n // 3),
        )
        for n in range(120)
    ]
    seen, cursor = [], None
    while True:
        query = {"resident": resident.pk} if by_resident else {}
        if cursor:
            query["before"] = cursor
        page = viewer_client.get(f"/console/records/readings/?{urlencode(query)}").context["page"]
        seen += page.rows
        if not page.has_next:
            break
        cursor = page.next_cursor
    assert sorted(row.pk for row in seen) == sorted(reading.pk for reading in readings)
    assert len(seen) == 120
    assert [(row.measured_at, row.pk) for row in seen] == sorted(
        ((row.measured_at, row.pk) for row in seen), reverse=True
    )
