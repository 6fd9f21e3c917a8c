"""Alerts in a real browser: a device's SOS reaches an open console by itself; carers act on it."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone
from playwright.sync_api import expect

from dashboard.services.alert_escalation import alert_escalations_run
from ingest.models import Alert, DeviceEvent
from ingest.services.devices import device_key_issue
from tests.browser.conftest import log_in
from tests.factories import AlertFactory, DeviceFactory, ResidentFactory, UserFactory
from tests.webhooks import TEST_SECRET, OnCallReceiver
from tests.workers import worker_thread

pytestmark = pytest.mark.usefixtures("committed_db")

OPERATORS = "Console operators"
VIEWERS = "Console viewers"


def device_event_post(base_url: str, key: str, *, event_type: str, occurred_at) -> int:
    """What a wearable sends: one event, over HTTP, with its own time."""
    body = {"events": [{"event_type": event_type, "severity": 3, "occurred_at": occurred_at.isoformat()}]}
    request = urllib.request.Request(
        f"{base_url}/api/v1/ingest/",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Api-Key {key}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def test_an_sos_reaches_the_open_console_without_reload_and_is_acknowledged_and_resolved(
    live_server, page, screenshot, ingest_queue
):
    UserFactory(username="olivia", role=OPERATORS)
    resident = ResidentFactory(full_name="Margaret Hale", phone="+44 7700 900123")
    device = DeviceFactory(serial_no="WATCH-0218", resident=resident)
    _, key = device_key_issue(device=device)
    log_in(page, live_server.url, "olivia")
    expect(page.locator("h1")).to_have_text("Overview")

    # Pressed at night, sent when the phone was back in range hours later.
    happened = (timezone.now() - timedelta(hours=6, minutes=54)).replace(microsecond=0)
    with worker_thread(ingest_queue):
        assert device_event_post(live_server.url, key, event_type="sos", occurred_at=happened) == 202
        banner = page.locator("#live-alerts .live-alert.critical")
        expect(banner).to_be_visible(timeout=10_000)  # pushed: no reload, no click
    alert = Alert.objects.get()
    expect(banner).to_contain_text("SOS — Margaret Hale — WATCH-0218")
    expect(banner).to_contain_text("happened ")
    expect(banner).to_contain_text(", raised ")
    expect(page).to_have_title(re.compile(r"^\(1\) SOS — Margaret Hale · "))
    screenshot(page, "alert-pushed")

    banner.locator("a").click()
    expect(page.locator("h1")).to_contain_text("SOS — Margaret Hale")
    expect(page.locator("#alert-happened")).to_contain_text(f"{happened:%Y-%m-%d %H:%M:%S} UTC")
    expect(page.locator("#alert-raised")).to_contain_text("after it happened")
    event = DeviceEvent.objects.get(device=device)
    expect(page.locator("#alert-resident")).to_have_attribute("href", f"/console/residents/{resident.pk}/")
    expect(page.locator("#alert-device")).to_have_attribute("href", f"/console/devices/{device.pk}/")
    expect(page.locator("#alert-event")).to_have_attribute("href", f"/console/events/{event.pk}/")

    page.fill("#acknowledge-form textarea[name=note]", "Called Margaret, carer on the way")
    page.click("#acknowledge-form button")
    expect(page.locator(".messages")).to_contain_text(f"Alert {alert.pk} acknowledged.")
    expect(page.locator("#alert-status")).to_have_text("acknowledged")
    expect(page.locator("#alert-history-log")).to_contain_text("Called Margaret, carer on the way")
    screenshot(page, "alert-acknowledged")

    page.fill("#resolve-form textarea[name=note]", "Found on the floor, unhurt; helped up")
    page.click("#resolve-form button")
    expect(page.locator("#alert-status")).to_have_text("resolved")
    expect(page.locator("#alert-actions")).to_have_count(0)

    page.goto(f"{live_server.url}/console/audit/")
    rows = page.locator("table tr")
    expect(rows.filter(has_text="acknowledged alert")).to_contain_text("Called Margaret")
    expect(rows.filter(has_text="resolved alert")).to_contain_text("helped up")
    expect(rows.filter(has_text="resolved alert")).to_contain_text("olivia")


def test_an_overdue_alert_is_marked_escalated_and_the_escalation_shown(
    live_server, page, screenshot, settings
):
    settings.ALERT_ESCALATE_MINUTES = 15
    settings.ALERT_ESCALATION_WEBHOOK_SECRET = TEST_SECRET
    UserFactory(username="vera", role=VIEWERS)
    overdue = AlertFactory(alert_type="fall_detected", message="Critical event fall_detected from device W-9")
    Alert.objects.filter(pk=overdue.pk).update(created_at=timezone.now() - timedelta(minutes=22))
    recent = AlertFactory(alert_type="sos")
    with OnCallReceiver([500, 200]).running() as receiver:
        settings.ALERT_ESCALATION_WEBHOOK_URL = receiver.url
        now = timezone.now()
        alert_escalations_run(now=now)
        alert_escalations_run(now=now + timedelta(seconds=31))
    assert [delivery["verified"] for delivery in receiver.deliveries] == [True, True]

    log_in(page, live_server.url, "vera")
    page.goto(f"{live_server.url}/console/alerts/")
    overdue_row = page.locator(f'#open-alerts tr[data-alert-id="{overdue.pk}"]')
    expect(overdue_row.locator(".badge.overdue")).to_have_text("overdue")
    expect(overdue_row.locator(".badge.escalated")).to_have_text("escalated")
    expect(page.locator(f'#open-alerts tr[data-alert-id="{recent.pk}"] .badge.overdue')).to_have_count(0)
    screenshot(page, "alerts-open-overdue")

    overdue_row.locator("a").first.click()
    expect(page.locator("#alert-overdue")).to_contain_text("not acknowledged within 15 min")
    expect(page.locator("#alert-escalation")).to_contain_text("escalated at")
    expect(page.locator("#alert-escalation")).to_contain_text("/hooks/on-call")
    expect(page.locator("#alert-escalation")).not_to_contain_text("s3cret")
    history = page.locator("#alert-history-log")
    expect(history).to_contain_text("escalation failed")
    expect(history).to_contain_text("HTTP 500")
    # a viewer sees everything and can act on nothing
    expect(page.locator("#acknowledge-form")).to_have_count(0)
    expect(page.locator("#resolve-form")).to_have_count(0)
    screenshot(page, "alert-escalated")


def test_an_expired_session_stops_the_stream_with_a_notice_not_a_login_page(live_server, page, settings):
    settings.ALERT_STREAM_SECONDS = 1
    UserFactory(username="olivia", role=OPERATORS)
    log_in(page, live_server.url, "olivia")
    # (the overview's own panel reloads the whole page when the session ends; the alerts list has none)
    page.goto(f"{live_server.url}/console/alerts/")
    Session.objects.all().delete()  # the session ends while the page stays open

    notice = page.locator("#session-expired")
    # the console's one notice, whichever poller noticed first (the overview test sees the same text)
    expect(notice).to_have_text(re.compile(r"^Session expired — sign in again\."), timeout=10_000)
    expect(notice).to_have_attribute("role", "alert")
    expect(notice.locator("a")).to_have_attribute("href", "/console/login/?next=%2Fconsole%2Falerts%2F")
    expect(page.locator("main input[name=password]")).to_have_count(0)
    # the page stopped asking: no reconnect loop against a dead session
    time.sleep(2.5)
    expect(page.locator("#session-expired")).to_have_count(1)
