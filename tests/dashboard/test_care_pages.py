"""Resident, device and event pages; issuing keys by POST → redirect → GET; one-key revoke."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone

from dashboard.models import AuditEntry
from ingest.models import DeviceAPIKey, DeviceEvent
from ingest.refusals import device_refusal_record
from ingest.services.devices import device_key_issue
from tests.factories import AlertFactory, DeviceFactory, ResidentFactory, SensorReadingFactory

pytestmark = pytest.mark.django_db


def _issue(client, device, name="spare"):
    return client.post(f"/console/devices/{device.pk}/keys/issue/", {"name": name})


def test_issuing_a_key_redirects_and_a_reload_mints_nothing(operator_client):
    device = DeviceFactory()
    issued = _issue(operator_client, device)
    assert issued.status_code == 302
    handover_url = issued["Location"]

    shown = operator_client.get(handover_url)
    key = shown.context["key"]
    assert shown.status_code == 200 and key.encode() in shown.content
    assert DeviceAPIKey.objects.get_from_key(key).device == device

    again = operator_client.get(handover_url)  # a reload of the page that showed the key
    assert again.status_code == 410
    assert key.encode() not in again.content and b"already been shown" in again.content
    assert DeviceAPIKey.objects.filter(device=device).count() == 1


def test_the_plain_key_is_stored_nowhere_on_the_server(operator_client):
    device = DeviceFactory()
    handover_url = _issue(operator_client, device)["Location"]
    session_rows = " ".join(str(session.get_decoded()) for session in Session.objects.all())
    audit = " ".join(f"{entry.detail} {entry.target}" for entry in AuditEntry.objects.all())

    key = operator_client.get(handover_url).context["key"]

    secret = key.partition(".")[2]
    assert secret not in session_rows and secret not in audit
    assert all(secret not in str(row) for row in DeviceAPIKey.objects.values())


def test_the_hand_over_needs_the_pad_from_the_same_browser(operator_client):
    device = DeviceFactory()
    handover_url = _issue(operator_client, device)["Location"]
    operator_client.cookies.pop("device_key_pad")
    response = operator_client.get(handover_url)
    assert response.status_code == 410 and response.context["key"] is None


def test_a_hand_over_belongs_to_its_device(operator_client):
    device, other = DeviceFactory(), DeviceFactory()
    handover_url = _issue(operator_client, device)["Location"]
    token = handover_url.rstrip("/").rsplit("/", 1)[1]
    assert operator_client.get(f"/console/devices/{other.pk}/keys/issued/{token}/").status_code == 410


def test_one_key_is_revoked_the_others_keep_working(operator_client):
    device = DeviceFactory(serial_no="KEY-1")
    kept, kept_key = device_key_issue(device=device, name="kept")
    revoked, revoked_key = device_key_issue(device=device, name="lost")

    response = operator_client.post(
        f"/console/devices/{device.pk}/keys/{revoked.prefix}/revoke/", follow=True
    )

    assert f"Revoked key {revoked.prefix} of KEY-1".encode() in response.content
    assert not DeviceAPIKey.objects.is_valid(revoked_key) and DeviceAPIKey.objects.is_valid(kept_key)
    entry = AuditEntry.objects.get(action="revoked device key")
    assert (entry.actor_name, entry.target, entry.detail) == ("olivia", "KEY-1", f"prefix {revoked.prefix}")
    again = operator_client.post(f"/console/devices/{device.pk}/keys/{revoked.prefix}/revoke/", follow=True)
    assert b"has no active key" in again.content


def test_a_viewer_cannot_issue_revoke_or_open_a_hand_over(viewer_client, operator_client):
    device = DeviceFactory()
    api_key, _ = device_key_issue(device=device)
    handover_url = _issue(operator_client, device)["Location"]
    assert _issue(viewer_client, device).status_code == 403
    assert (
        viewer_client.post(f"/console/devices/{device.pk}/keys/{api_key.prefix}/revoke/").status_code == 403
    )
    assert viewer_client.get(handover_url).status_code == 403
    assert DeviceAPIKey.objects.filter(device=device, revoked=False).count() == 2
    assert b"Issue a new key" not in viewer_client.get(f"/console/devices/{device.pk}/").content


def test_unknown_devices_residents_and_events_are_404(operator_client):
    assert operator_client.get("/console/devices/999999/").status_code == 404
    assert operator_client.get("/console/residents/999999/").status_code == 404
    assert operator_client.get("/console/events/999999/").status_code == 404
    assert operator_client.post("/console/devices/999999/keys/issue/").status_code == 404
    assert operator_client.post("/console/devices/999999/keys/abc/revoke/").status_code == 404


def test_the_resident_page_shows_devices_alerts_latest_vitals_and_contacts(viewer_client):
    resident = ResidentFactory(
        full_name="Ada Byron", phone="+44 7700 900123", emergency_contact="+44 20 7946 0000"
    )
    watch = DeviceFactory(serial_no="VIT-9", resident=resident)
    now = timezone.now()
    for minutes in (30, 20, 10):
        SensorReadingFactory(
            device=watch,
            metric="heart_rate",
            value=60 + minutes,
            measured_at=now - timedelta(minutes=minutes),
        )
    SensorReadingFactory(
        device=watch, metric="spo2", value=97, unit="%", measured_at=now - timedelta(minutes=5)
    )
    alert = AlertFactory(device=watch, message="Fall in the bathroom")

    response = viewer_client.get(f"/console/residents/{resident.pk}/")

    care = response.context["care"]
    assert [(r.metric, r.value) for r in care.latest_vitals] == [("heart_rate", 70.0), ("spo2", 97.0)]
    assert care.open_alerts == [alert] and care.devices == [watch]
    content = response.content.decode()
    assert 'href="tel:+447700900123"' in content and 'href="tel:+442079460000"' in content
    assert f'href="/console/devices/{watch.pk}/"' in content
    assert 'id="resident-chart"' in content


def test_the_device_page_shows_events_readings_keys_and_refusals(operator_client):
    device = DeviceFactory(serial_no="FALL-7")
    event = DeviceEvent.objects.create(
        device=device,
        event_type="fall_detected",
        severity=3,
        occurred_at=timezone.now(),
        detail={"room": "bath"},
    )
    SensorReadingFactory(device=device)
    api_key, _ = device_key_issue(device=device)
    DeviceAPIKey.objects.filter(pk=api_key.pk).update(last_used_at=timezone.now())
    device_refusal_record(
        device_id=device.pk, status=429, code="throttled", message="slow down", key_prefix=api_key.prefix
    )

    response = operator_client.get(f"/console/devices/{device.pk}/")

    care = response.context["care"]
    assert care.events == [event] and len(care.readings) == 1 and care.keys == [api_key]
    assert [(r.status, r.code) for r in care.refusals] == [(429, "throttled")]
    content = response.content.decode()
    assert f'href="/console/events/{event.pk}/"' in content
    assert f'href="/console/residents/{device.resident_id}/"' in content
    assert 'id="device-status-form"' in content


def test_events_are_listed_by_when_they_occurred_with_json_detail(viewer_client):
    device = DeviceFactory()
    now = timezone.now()
    # Inserted out of order: a late upload of an older event gets the higher id.
    newest = DeviceEvent.objects.create(device=device, event_type="sos", occurred_at=now, detail={"b": 1})
    older = DeviceEvent.objects.create(
        device=device, event_type="sos", occurred_at=now - timedelta(hours=7), detail={}
    )
    oldest_other = DeviceEvent.objects.create(
        device=DeviceFactory(), event_type="door", occurred_at=now - timedelta(hours=9), detail={"ok": True}
    )
    middle = DeviceEvent.objects.create(
        device=device, event_type="sos", occurred_at=now - timedelta(hours=1), detail={}
    )

    response = viewer_client.get("/console/records/events/")
    assert response.context["page"].rows == [newest, middle, older, oldest_other]
    assert b"{&quot;ok&quot;: true}" in response.content  # JSON, not a Python dict

    detail = viewer_client.get(f"/console/events/{newest.pk}/").content.decode()
    assert "{\n  &quot;b&quot;: 1\n}" in detail


def test_events_page_by_occurrence_with_ties_each_row_once(viewer_client):
    devices = DeviceFactory.create_batch(3)
    instant = timezone.now()
    events = [
        DeviceEvent.objects.create(
            device=devices[n % 3],
            event_type="motion",
            occurred_at=instant - timedelta(seconds=n // 4),
            detail={},
        )
        for n in range(120)
    ]
    seen, cursor = [], None
    while True:
        page = viewer_client.get(
            "/console/records/events/?" + urlencode({"before": cursor} if cursor else {})
        ).context["page"]
        seen += page.rows
        if not page.has_next:
            break
        cursor = page.next_cursor
    assert sorted(e.pk for e in seen) == sorted(e.pk for e in events)


def test_record_lists_link_devices_and_residents_to_their_pages(viewer_client):
    reading = SensorReadingFactory()
    content = viewer_client.get("/console/records/readings/").content.decode()
    assert f'<a href="/console/devices/{reading.device_id}/">{reading.device.serial_no}</a>' in content
    content = viewer_client.get("/console/records/devices/").content.decode()
    assert f'<a href="/console/residents/{reading.device.resident_id}/">' in content
    assert viewer_client.get(f"/console/records/devices/{reading.device_id}/")["Location"] == (
        f"/console/devices/{reading.device_id}/"
    )


def test_events_of_one_type_are_listed_by_when_they_occurred(viewer_client):
    device = DeviceFactory()
    now = timezone.now()
    newest = DeviceEvent.objects.create(device=device, event_type="sos", occurred_at=now, detail={})
    late_upload = DeviceEvent.objects.create(
        device=device, event_type="sos", occurred_at=now - timedelta(hours=8), detail={}
    )
    DeviceEvent.objects.create(device=device, event_type="door", occurred_at=now, detail={})
    for query in ("event_type=sos", f"event_type=sos&device={device.serial_no}", "event_type=sos&severity=0"):
        rows = viewer_client.get(f"/console/records/events/?{query}").context["page"].rows
        assert rows == [newest, late_upload], query


def test_a_hand_over_not_opened_in_time_shows_nothing(operator_client, monkeypatch):
    from dashboard.services import device_keys

    device = DeviceFactory()
    handover_url = _issue(operator_client, device)["Location"]
    later = device_keys.time.time() + device_keys.HANDOVER_SECONDS + 1
    monkeypatch.setattr(device_keys.time, "time", lambda: later)
    response = operator_client.get(handover_url)
    assert response.status_code == 410 and response.context["key"] is None


def test_an_operator_issuing_keys_in_a_loop_keeps_a_bounded_session(operator_client):
    from dashboard.services.device_keys import HANDOVERS_SESSION_KEY, MAX_PENDING_HANDOVERS

    device = DeviceFactory()
    for _ in range(MAX_PENDING_HANDOVERS + 4):
        _issue(operator_client, device)
    assert len(operator_client.session[HANDOVERS_SESSION_KEY]) == MAX_PENDING_HANDOVERS


def test_the_device_page_says_unknown_when_the_refusal_trail_cannot_be_read(viewer_client, settings):
    device = DeviceFactory()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    content = viewer_client.get(f"/console/devices/{device.pk}/").content.decode()
    assert "Unknown: the refusal trail cannot be read" in content
