"""Alerts' own pages: links and times, acknowledge with a note, resolve, the live stream."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from dashboard.models import AlertAction, AlertEscalation, AuditEntry
from dashboard.views import alerts as alert_views
from ingest.models import Alert, AlertOrigin, AlertStatus, DeviceEvent
from tests.factories import AlertFactory, DeviceFactory

pytestmark = pytest.mark.django_db


def _sos_raised_late(*, happened_hours_ago: float = 7, raised_minutes_ago: float = 2) -> Alert:
    """An SOS pressed at night whose batch arrived hours later: the event has its own time."""
    device = DeviceFactory(serial_no="WATCH-7")
    happened = timezone.now() - timedelta(hours=happened_hours_ago)
    event = DeviceEvent.objects.create(device=device, event_type="sos", severity=3, occurred_at=happened)
    alert = AlertFactory(device=device, alert_type="sos", message="Critical event sos from device WATCH-7")
    Alert.objects.filter(pk=alert.pk).update(
        created_at=timezone.now() - timedelta(minutes=raised_minutes_ago)
    )
    AlertOrigin.objects.create(alert=alert, event=event)
    alert.refresh_from_db()
    return alert


def test_an_alert_links_to_its_resident_device_and_event_and_shows_when_it_happened(viewer_client):
    alert = _sos_raised_late()
    event = alert.origin.event
    content = viewer_client.get(f"/console/alerts/{alert.pk}/").content.decode()
    assert f'href="/console/residents/{alert.resident_id}/"' in content
    assert f'href="/console/devices/{alert.device_id}/"' in content
    assert f'href="/console/events/{event.pk}/"' in content
    assert f"{event.occurred_at:%Y-%m-%d %H:%M:%S}" in content  # when it happened on the device
    assert f"{alert.created_at:%Y-%m-%d %H:%M:%S}" in content  # when it was raised
    assert "6 h 58 min after it happened" in content
    for link in (f"/console/residents/{alert.resident_id}/", f"/console/devices/{alert.device_id}/"):
        assert viewer_client.get(link).status_code == 200
    assert "sos" in viewer_client.get(f"/console/events/{event.pk}/").content.decode()


def test_an_alert_raised_before_links_were_recorded_finds_its_event(viewer_client):
    alert = _sos_raised_late()
    event = alert.origin.event
    AlertOrigin.objects.all().delete()
    DeviceEvent.objects.create(  # a later SOS, after the alert: not the one that raised it
        device=alert.device, event_type="sos", severity=3, occurred_at=timezone.now()
    )
    content = viewer_client.get(f"/console/alerts/{alert.pk}/").content.decode()
    assert f'href="/console/events/{event.pk}/"' in content
    assert "nearest matching event" in content


def test_open_critical_alerts_come_first_and_overdue_ones_are_marked(viewer_client, settings):
    settings.ALERT_ESCALATE_MINUTES = 15
    offline = AlertFactory(alert_type="device_offline", message="silent")
    Alert.objects.filter(pk=offline.pk).update(created_at=timezone.now() - timedelta(hours=2))
    fresh = _sos_raised_late(raised_minutes_ago=1)
    overdue = AlertFactory(alert_type="fall_detected")
    Alert.objects.filter(pk=overdue.pk).update(created_at=timezone.now() - timedelta(minutes=20))
    AlertFactory(status=AlertStatus.RESOLVED)

    response = viewer_client.get("/console/alerts/")
    lines = response.context["open_lines"]
    assert [line.alert.pk for line in lines] == [overdue.pk, fresh.pk, offline.pk]
    assert [(line.critical, line.overdue) for line in lines] == [(True, True), (True, False), (False, True)]
    content = response.content.decode()
    assert 'class="alert-row critical overdue"' in content
    assert "happened" in content and "raised" in content


def test_acknowledging_keeps_the_note_and_resolving_closes_the_alert(operator_client):
    alert = _sos_raised_late()
    AlertEscalation.objects.create(alert=alert, next_attempt_at=timezone.now())
    operator_client.post(f"/console/alerts/{alert.pk}/acknowledge/", {"note": "called her, on my way"})
    alert.refresh_from_db()
    assert (alert.status, alert.acknowledged_by) == (AlertStatus.ACKNOWLEDGED, "olivia")
    # acting on it stops the escalation that was still waiting
    assert AlertEscalation.objects.get(pk=alert.pk).status == "cancelled"

    response = operator_client.post(
        f"/console/alerts/{alert.pk}/resolve/", {"note": "false alarm, pressed by mistake"}, follow=True
    )
    assert f"Alert {alert.pk} resolved." in response.content.decode()
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED
    notes = list(AlertAction.objects.values_list("action", "actor_name", "note"))
    assert notes == [
        ("acknowledged", "olivia", "called her, on my way"),
        ("resolved", "olivia", "false alarm, pressed by mistake"),
    ]
    audit = list(AuditEntry.objects.order_by("at").values_list("action", "target"))
    assert audit == [("acknowledged alert", f"alert {alert.pk}"), ("resolved alert", f"alert {alert.pk}")]
    assert "false alarm" in AuditEntry.objects.get(action="resolved alert").detail
    page = operator_client.get(f"/console/alerts/{alert.pk}/").content.decode()
    assert "called her, on my way" in page and 'id="resolve-form"' not in page


def test_an_alert_resolved_straight_from_open_counts_as_acknowledged(operator_client):
    alert = AlertFactory()
    operator_client.post(f"/console/alerts/{alert.pk}/resolve/")
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED and alert.acknowledged_by == "olivia"


def test_a_refused_action_says_why_and_changes_nothing(operator_client, viewer_client):
    alert = AlertFactory(status=AlertStatus.RESOLVED)
    response = operator_client.post(f"/console/alerts/{alert.pk}/resolve/", follow=True)
    assert "already resolved" in response.content.decode()
    response = operator_client.post(f"/console/alerts/{alert.pk}/acknowledge/", follow=True)
    assert "is not open" in response.content.decode()
    open_alert = AlertFactory()
    response = operator_client.post(
        f"/console/alerts/{open_alert.pk}/acknowledge/", {"note": "x" * 2001}, follow=True
    )
    assert "longer than 2000" in response.content.decode()
    assert viewer_client.post(f"/console/alerts/{open_alert.pk}/resolve/").status_code == 403
    assert Alert.objects.get(pk=open_alert.pk).status == AlertStatus.OPEN
    assert not AlertAction.objects.exists() and not AuditEntry.objects.exists()


def _events(response) -> list[tuple[str, dict]]:
    text = b"".join(response.streaming_content if response.streaming else [response.content]).decode()
    events = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":")
        )
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_the_stream_sends_alerts_raised_after_the_page_was_shown(viewer_client, settings):
    settings.ALERT_STREAM_SECONDS = 0.3
    before = AlertFactory()
    Alert.objects.filter(pk=before.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    late = _sos_raised_late(raised_minutes_ago=1)
    response = viewer_client.get(
        f"/console/alerts/stream/?after={before.pk}", HTTP_ACCEPT="text/event-stream"
    )
    assert response["Content-Type"] == "text/event-stream"
    [(kind, data)] = _events(response)
    assert kind == "alert"
    assert data["id"] == late.pk and data["label"] == "SOS" and data["critical"] is True
    assert data["happened_at"] == late.origin.event.occurred_at.isoformat()
    assert data["url"] == f"/console/alerts/{late.pk}/"
    # a reconnecting browser continues after the last event it saw
    response = viewer_client.get("/console/alerts/stream/", HTTP_LAST_EVENT_ID=str(late.pk))
    assert _events(response) == []


def test_the_stream_also_sends_a_recent_alert_whose_id_is_lower_than_the_last_one_seen(
    viewer_client, settings
):
    """Ids are drawn before commit: a worker can commit alert 7 after another committed 8."""
    settings.ALERT_STREAM_SECONDS = 0.3
    committed_late = AlertFactory()  # created now, in the look-back
    newer = AlertFactory()
    Alert.objects.filter(pk=newer.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    response = viewer_client.get(f"/console/alerts/stream/?after={newer.pk}")
    assert [data["id"] for _, data in _events(response)] == [committed_late.pk]


def test_an_expired_session_gets_a_session_expired_event_not_the_login_page():
    response = Client().get("/console/alerts/stream/", HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    assert _events(response) == [("session-expired", {"login": "/console/login/"})]


def test_a_process_serving_its_share_of_streams_turns_a_page_away_for_later(viewer_client, settings):
    settings.ALERT_STREAMS_PER_PROCESS = 0
    response = viewer_client.get("/console/alerts/stream/")
    text = b"".join(response.streaming_content).decode()
    assert text.startswith(f"retry: {alert_views.BUSY_RETRY_MILLISECONDS}")
    assert alert_views._streams_open == 0


def test_the_stream_does_not_announce_an_alert_raised_before_the_page_was_shown(viewer_client, settings):
    settings.ALERT_STREAM_SECONDS = 0.3
    known = AlertFactory()
    Alert.objects.filter(pk=known.pk).update(created_at=timezone.now() - timedelta(seconds=5))
    response = viewer_client.get(f"/console/alerts/stream/?after={known.pk}")
    assert _events(response) == []


@pytest.mark.django_db(transaction=True)
def test_a_browser_that_leaves_gives_its_stream_thread_back_within_seconds(live_server, settings):
    """A stream holds a web thread: one whose page was closed must not keep it for 25 s."""
    import socket
    from urllib.parse import urlsplit

    from tests.factories import UserFactory
    from tests.workers import wait_until

    settings.ALERT_STREAM_SECONDS = 25
    client = Client()
    client.force_login(UserFactory(username="carla", role="Console viewers"))
    address = urlsplit(live_server.url)
    browser = socket.create_connection((address.hostname, address.port))
    browser.sendall(
        b"GET /console/alerts/stream/ HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n"
        + f"Cookie: sessionid={client.cookies['sessionid'].value}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += browser.recv(4096)
    assert b"text/event-stream" in head
    assert wait_until(lambda: alert_views._streams_open == 1, timeout=5)
    browser.close()
    assert wait_until(lambda: alert_views._streams_open == 0, timeout=5)
