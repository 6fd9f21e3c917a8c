"""The console in a real browser: operators repair failures end to end; viewers cannot act."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone
from playwright.sync_api import expect

from dashboard.services.bulk_jobs import bulk_jobs_run_pending
from ingest.models import Alert, DeadLetter, IngestMessage, SensorReading
from tests.broker import publish_device_batch
from tests.browser.conftest import log_in
from tests.factories import AlertFactory, DeadLetterFactory, DeviceFactory, SensorReadingFactory, UserFactory
from tests.workers import wait_until, worker_thread

pytestmark = pytest.mark.usefixtures("committed_db")

OPERATORS = "Console operators"
VIEWERS = "Console viewers"


def _processed_history(device, minutes: int = 60) -> None:
    """Ledger rows of the last hour, so that the overview's rate chart has a shape."""
    now = timezone.now()
    IngestMessage.objects.bulk_create(
        IngestMessage(
            message_id=uuid.uuid4(),
            kind="device_batch",
            device=device,
            status="processed",
            received_at=now,
            processed_at=now - timedelta(minutes=minute, seconds=second),
            readings=40 + (minute * 7) % 60,
            events=1,
        )
        for minute in range(minutes)
        for second in range(0, 60, 6 + minute % 5)
    )


def test_operator_edits_and_requeues_a_failed_message_until_it_is_processed(
    live_server, page, screenshot, ingest_queue
):
    UserFactory(username="olivia", role=OPERATORS)
    device = DeviceFactory(serial_no="VIT-0042")
    SensorReadingFactory.create_batch(5, device=device)
    _processed_history(device)
    # A real failure: the worker retries it with growing delays, then dead-letters it.
    poison = publish_device_batch(
        device_id=987_654,
        readings=[{"metric": "heart_rate", "value": 70.0, "unit": "bpm", "measured_at": timezone.now()}],
    )
    IngestMessage.objects.create(
        message_id=poison.message_id, kind="device_batch", device=device, received_at=timezone.now()
    )
    with worker_thread(ingest_queue):
        assert wait_until(lambda: DeadLetter.objects.filter(message_id=poison.message_id).exists())
    dead = DeadLetter.objects.get(message_id=poison.message_id)
    DeadLetterFactory.create_batch(2)

    log_in(page, live_server.url, "olivia")
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("#overview-panel")).to_contain_text(ingest_queue.queue)
    screenshot(page, "overview")

    page.click("text=Failed messages")
    expect(page.locator("table")).to_contain_text("IntegrityError")
    screenshot(page, "failed-messages")
    page.click(f"text={str(dead.message_id)[:10]}")
    expect(page.locator("#dead-letter-status")).to_have_text("dead")
    screenshot(page, "failed-message-detail")

    # The browser refuses to submit a body that is not JSON.
    page.fill("#edit-body", "{broken")
    page.fill("#edit-form input[name=reason]", "device id typo")
    page.click("#edit-requeue")
    expect(page.locator(".json-error")).to_contain_text("Not valid JSON")
    assert DeadLetter.objects.get(pk=dead.pk).status == "dead"

    # An edit may not move the data to another device: refused, and what was typed stays.
    body = json.loads(dead.body_text)
    body["device_id"] = device.id
    page.fill("#edit-body", json.dumps(body, indent=2))
    page.click("#edit-requeue")
    expect(page.locator("#edit-errors")).to_contain_text("device_id: Cannot be changed by an edit")
    expect(page.locator("#edit-body")).to_have_value(json.dumps(body, indent=2))
    expect(page.locator("#edit-form input[name=reason]")).to_have_value("device id typo")
    assert DeadLetter.objects.get(pk=dead.pk).status == "dead"

    # The device it came from is registered; the operator corrects a reading and requeues.
    registered_late = DeviceFactory(id=987_654, serial_no="VIT-0043")
    body = json.loads(dead.body_text)
    body["readings"][0]["value"] = 72.0
    page.fill("#edit-body", json.dumps(body, indent=2))
    page.fill("#edit-form input[name=reason]", "device registered; corrected the reading")
    page.click("#edit-requeue")
    expect(page.locator("#edit-diff")).to_contain_text('+      "value": 72.0')
    page.click("#confirm-requeue")
    expect(page.locator(".messages")).to_contain_text("requeued (the broker confirmed it)")
    expect(page.locator("#dead-letter-status")).to_have_text("requeued")

    with worker_thread(ingest_queue):
        assert wait_until(lambda: IngestMessage.objects.get(message_id=dead.message_id).status == "processed")
    page.reload()
    expect(page.locator("#message-status")).to_have_text("processed")
    expect(page.locator("table").last).to_contain_text("Edited and requeued")
    expect(page.locator("main")).to_contain_text("Traceback (most recent call last)")
    assert list(SensorReading.objects.filter(device=registered_late).values_list("value", flat=True)) == [
        72.0
    ]
    screenshot(page, "failed-message-processed")


def test_operator_bulk_requeues_everything_matching_a_filter(live_server, page, screenshot, ingest_queue):
    UserFactory(username="olivia", role=OPERATORS)
    matching = DeadLetterFactory.create_batch(
        3, error_class="django.db.utils.DataError", error_message="value too long"
    )
    other = DeadLetterFactory()

    log_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/console/failed/?status=dead&error_class=DataError")
    expect(page.locator("table tr")).to_have_count(4)  # header + the 3 matching
    page.select_option("select[name=scope]", "filter")
    page.click("button[name=action][value=requeue]")
    expect(page.locator("h1")).to_have_text("Requeue 3 failed messages?")
    page.click("#confirm-plan")
    expect(page.locator("h1")).to_contain_text("Requeue 3 failed messages: DataError")
    expect(page.locator("#job-status")).to_have_text("queued")

    runner = threading.Thread(target=lambda: (bulk_jobs_run_pending(), connections.close_all()))
    runner.start()
    runner.join(timeout=30)
    # The page follows the job by itself (no reload).
    expect(page.locator("#job-status")).to_have_text("done", timeout=10_000)
    expect(page.locator("#job-counts")).to_have_text("3 done, 0 skipped of 3")
    screenshot(page, "bulk-job")
    assert {letter.pk for letter in DeadLetter.objects.filter(status="requeued")} == {
        letter.pk for letter in matching
    }
    assert DeadLetter.objects.get(pk=other.pk).status == "dead"

    page.goto(f"{live_server.url}/console/failed/groups/?status=")
    expect(page.locator("table")).to_contain_text("DataError")
    screenshot(page, "failure-groups")


def test_operator_acknowledges_an_alert(live_server, page, screenshot):
    UserFactory(username="olivia", role=OPERATORS)
    alert = AlertFactory(message="Critical event fall_detected from device FALL-1")
    AlertFactory(
        status="acknowledged", acknowledged_by="someone", acknowledged_at=timezone.now() - timedelta(hours=1)
    )

    log_in(page, live_server.url, "olivia")
    page.click("header nav >> text=Alerts")
    expect(page.locator("#open-alerts")).to_contain_text("FALL-1")
    screenshot(page, "alerts")
    page.click("#open-alerts button:has-text('Acknowledge')")
    expect(page.locator(".messages")).to_contain_text(f"Alert {alert.pk} acknowledged")
    expect(page.locator("#open-alerts")).to_contain_text("No open alerts")
    alert = Alert.objects.get(pk=alert.pk)
    assert (alert.status, alert.acknowledged_by) == ("acknowledged", "olivia")


def test_records_are_browsable(live_server, page, screenshot):
    UserFactory(username="victor", role=VIEWERS)
    SensorReadingFactory.create_batch(8, device=DeviceFactory(serial_no="VIT-0001"))
    log_in(page, live_server.url, "victor")
    page.click("header nav >> text=Sensor readings")
    page.fill("input[name=device]", "VIT-0001")
    page.click("button:has-text('Filter')")
    expect(page.locator("table tr")).to_have_count(9)
    screenshot(page, "records-readings")


def test_the_browser_enforces_the_content_security_policy(live_server, page, policy_violations):
    """An injected inline script does not run, and the violation listener sees it (so its
    silence in the other tests means the console needs nothing the policy forbids)."""
    UserFactory(username="victor", role=VIEWERS)
    log_in(page, live_server.url, "victor")
    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.injected = true";
            document.body.appendChild(script);
        }"""
    )
    assert page.evaluate("() => window.injected === undefined")
    page.wait_for_function("() => true")  # let the violation event reach Python
    assert wait_until(lambda: any("script-src" in violation for violation in policy_violations), timeout=5)
    policy_violations.clear()


@pytest.mark.parametrize(
    ("url", "shows"),
    [("/api/docs/", "iot_care ingestion API"), ("/admin/login/", "iot_care ingestion console")],
)
def test_the_api_docs_and_the_admin_work_under_the_policy(live_server, page, url, shows):
    page.goto(f"{live_server.url}{url}")
    expect(page.locator("body")).to_contain_text(shows)  # rendered by their scripts; no violation


def test_redoc_works_with_only_its_third_party_fonts_and_logo_blocked(live_server, page, policy_violations):
    page.goto(f"{live_server.url}/api/redoc/")
    expect(page.locator("body")).to_contain_text("iot_care ingestion API")
    page.wait_for_load_state("networkidle")
    page.close()  # no later report can arrive after the check
    # Redoc asks Google Fonts and its CDN for cosmetics: refused on purpose (no third parties).
    third_party = ("https://fonts.googleapis.com", "https://cdn.redoc.ly")
    assert all(any(origin in violation for origin in third_party) for violation in policy_violations)
    policy_violations.clear()


def test_a_viewer_cannot_act_even_by_posting_directly(live_server, page):
    UserFactory(username="victor", role=VIEWERS)
    dead = DeadLetterFactory()
    log_in(page, live_server.url, "victor")
    page.goto(f"{live_server.url}/console/failed/{dead.pk}/")
    expect(page.locator("main")).to_contain_text("need the operator role")
    expect(page.locator("#edit-form")).to_have_count(0)

    status = page.evaluate(
        """async (url) => {
            const token = document.cookie.split('; ').find(c => c.startsWith('csrftoken=')).split('=')[1];
            const response = await fetch(url, {method: 'POST', headers: {'X-CSRFToken': token}, body: new URLSearchParams({reason: 'x'})});
            return response.status;
        }""",
        f"{live_server.url}/console/failed/{dead.pk}/discard/",
    )
    assert status == 403
    assert DeadLetter.objects.get(pk=dead.pk).status == "dead"


def test_scheduler_page(live_server, page, screenshot):
    from django_apscheduler.models import DjangoJob, DjangoJobExecution

    from scheduler.models import CollectionRun, CollectionSource, SchedulerLeader

    UserFactory(username="olivia", role=OPERATORS)
    now = timezone.now()
    SchedulerLeader.objects.create(
        pk=1, instance="console-host pid=4242", since=now - timedelta(hours=3), heartbeat_at=now
    )
    for job_id, minutes in [("collect_sources", 0.5), ("raise_alerts", 1), ("housekeeping", 60)]:
        job = DjangoJob.objects.create(
            id=job_id, next_run_time=now + timedelta(minutes=minutes), job_state=b""
        )
        for n in range(3):
            DjangoJobExecution.objects.create(
                job=job, status="Executed", run_time=now - timedelta(minutes=minutes * (n + 1)), duration=0.04
            )
    source = CollectionSource.objects.create(
        name="carelink", url="https://partner.example/feed", device=DeviceFactory(serial_no="GW-0007")
    )
    CollectionRun.objects.create(
        source=source,
        started_at=now,
        finished_at=now,
        status="partial",
        fetched=40,
        published=39,
        rejected=1,
        rejections=[{"kind": "reading", "index": 12, "errors": {"value": ["Must be a JSON number."]}}],
    )
    log_in(page, live_server.url, "olivia")
    page.click("header nav >> text=Scheduler")
    expect(page.locator("#scheduler-state")).to_have_text("running")
    expect(page.locator("#sources")).to_contain_text("39 published")
    page.click("#job-raise_alerts button[value=pause]")
    expect(page.locator(".messages")).to_contain_text("Pause of raise_alerts sent to the scheduler")
    screenshot(page, "scheduler")


def test_an_expired_session_is_announced_on_the_overview(live_server, page):
    """The panel refreshes itself: once the session is gone it must not show the login form
    inside the overview, nor take the page away from the operator: it says so, with a link."""
    UserFactory(username="victor", role=VIEWERS)
    log_in(page, live_server.url, "victor")
    expect(page.locator("#overview-panel")).to_contain_text("Consumers on the main queue")
    page.context.clear_cookies()  # as when the session cookie is gone
    expect(page.locator("#session-expired")).to_contain_text(
        "Session expired — sign in again", timeout=15_000
    )
    expect(page.locator("#overview-panel input[name=password]")).to_have_count(0)
    page.click("#session-expired a")
    expect(page.locator("input[name=password]")).to_have_count(1)
