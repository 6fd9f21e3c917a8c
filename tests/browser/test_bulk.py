"""Bulk actions you can trust, and the audit trail, clicked through in a real browser."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections
from playwright.sync_api import expect

from dashboard.models import BulkJob
from dashboard.services.bulk_jobs import bulk_jobs_run_pending
from ingest.models import DeadLetter
from tests.browser.conftest import log_in
from tests.dashboard.bulk import bulk_job_planned
from tests.factories import DeadLetterFactory, UserFactory

pytestmark = pytest.mark.usefixtures("committed_db")

OPERATORS = "Console operators"
VIEWERS = "Console viewers"


def _run_pending_jobs() -> None:
    runner = threading.Thread(target=lambda: (bulk_jobs_run_pending(), connections.close_all()))
    runner.start()
    runner.join(timeout=30)


def test_a_bulk_requeue_is_planned_confirmed_followed_and_audited(
    live_server, page, screenshot, ingest_queue
):
    UserFactory(username="olivia", role=OPERATORS)
    planned = DeadLetterFactory.create_batch(
        3, error_class="django.db.utils.DataError", error_message="too long"
    )
    other = DeadLetterFactory()

    log_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/console/failed/?status=dead&error_class=DataError")
    page.select_option("select[name=scope]", "filter")
    page.click("button[name=action][value=requeue]")

    # The plan: how many, by error class, a sample; nothing done yet.
    expect(page.locator("h1")).to_have_text("Requeue 3 failed messages?")
    expect(page.locator("#plan-groups")).to_contain_text("django.db.utils.DataError")
    expect(page.locator("#plan-total")).to_have_text("3")
    expect(page.locator("#plan-sample tr")).to_have_count(4)  # header + 3
    expect(page.locator("#confirm-plan")).to_have_text("Requeue these 3 messages")
    screenshot(page, "bulk-plan")
    assert BulkJob.objects.count() == 0
    late = DeadLetterFactory(
        error_class="django.db.utils.DataError", error_message="too long"
    )  # after the plan

    fragment_requests: list[str] = []
    page.on(
        "request",
        lambda request: fragment_requests.append(request.url) if "fragment=1" in request.url else None,
    )
    page.click("#confirm-plan")

    expect(page.locator("#job-title")).to_have_text(
        "Requeue 3 failed messages: DataError, matching status dead, error class DataError"
    )
    expect(page.locator("#job-status")).to_have_text("queued")
    expect(page.locator("#cancel-job")).to_be_visible()
    expect(page.locator("#job-progress")).to_have_attribute("data-polling", "running")

    _run_pending_jobs()

    expect(page.locator("#job-status")).to_have_text("done", timeout=10_000)
    expect(page.locator("#job-counts")).to_have_text("3 done, 0 skipped of 3")
    expect(page.locator("#cancel-job")).to_have_count(0)
    expect(page.locator("#job-progress")).to_have_attribute("data-polling", "stopped")
    asked = len(fragment_requests)
    time.sleep(2.5)  # the page asked every second while the job ran; finished, it asks no more
    assert len(fragment_requests) == asked
    screenshot(page, "bulk-job-done")
    assert {letter.pk for letter in DeadLetter.objects.filter(status="requeued")} == {
        letter.pk for letter in planned
    }
    assert DeadLetter.objects.get(pk=late.pk).status == "dead"
    assert DeadLetter.objects.get(pk=other.pk).status == "dead"

    # One audit entry for the job, with its count, linking back to it.
    job = BulkJob.objects.get()
    page.click("#job-audit-link")
    expect(page.locator("#audit-lines tr")).to_have_count(2)  # header + the job's one entry
    expect(page.locator("#audit-lines")).to_contain_text("bulk requeue")
    expect(page.locator("#audit-lines")).to_contain_text("Requeue 3 failed messages")
    screenshot(page, "audit-bulk-job")
    page.click(f"#audit-lines >> text=job {job.pk}")
    expect(page.locator("#job-title")).to_contain_text("Requeue 3 failed messages")


def test_a_discard_by_filter_needs_the_count_typed_and_a_reason(live_server, page, screenshot):
    UserFactory(username="olivia", role=OPERATORS)
    DeadLetterFactory.create_batch(4)

    log_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/console/failed/?status=dead")
    page.select_option("select[name=scope]", "filter")
    page.click("button[name=action][value=discard]")
    expect(page.locator("h1")).to_have_text("Discard 4 failed messages?")
    expect(page.locator("#plan-confirm")).to_contain_text("Type 4 to confirm")

    page.fill("#plan-confirm input[name=reason]", "test devices")
    page.fill("#confirmed-count", "40")
    page.click("#confirm-plan")
    expect(page.locator(".messages")).to_contain_text(
        "Type the number of messages, 4, to confirm the discard"
    )
    assert not BulkJob.objects.exists()

    page.fill("#plan-confirm input[name=reason]", "test devices")
    page.fill("#confirmed-count", "4")
    page.click("#confirm-plan")
    expect(page.locator("#job-title")).to_have_text(
        "Discard 4 failed messages: IntegrityError, matching status dead"
    )
    _run_pending_jobs()
    expect(page.locator("#job-status")).to_have_text("done", timeout=10_000)
    assert DeadLetter.objects.filter(status="discarded").count() == 4


def test_a_changed_plan_link_is_refused(live_server, page):
    UserFactory(username="olivia", role=OPERATORS)
    DeadLetterFactory.create_batch(2)
    log_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/console/failed/?status=dead")
    page.select_option("select[name=scope]", "filter")
    page.click("button[name=action][value=requeue]")
    expect(page.locator("h1")).to_have_text("Requeue 2 failed messages?")

    response = page.goto(page.url.rstrip("/") + "x/")
    assert response.status == 404
    expect(page.locator("#plan-refusal")).to_contain_text("no such plan of yours")
    assert not BulkJob.objects.exists()


def test_a_paused_job_says_why_and_offers_resume_and_cancel(live_server, page, screenshot):
    operator = UserFactory(username="olivia", role=OPERATORS)
    DeadLetterFactory.create_batch(30)
    job = bulk_job_planned(actor=operator, action="requeue")
    BulkJob.objects.filter(pk=job.pk).update(
        status=BulkJob.Status.PAUSED,
        done=25,
        failed_again=10,
        paused_reason="10 of the 25 messages this job requeued came back as dead letters (40%, over the 20% limit).",
    )

    log_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/console/jobs/{job.pk}/")
    expect(page.locator("#job-status")).to_have_text("paused")
    expect(page.locator("#job-paused-reason")).to_contain_text(
        "came back as dead letters (40%, over the 20% limit)"
    )
    expect(page.locator("#job-failed-again")).to_have_text("10 came back as dead letters")
    expect(page.locator("#cancel-job")).to_be_visible()
    screenshot(page, "bulk-job-paused")

    page.click("#resume-job")
    expect(page.locator(".messages")).to_contain_text(f"Job {job.pk} resumed")
    expect(page.locator("#job-status")).to_have_text("queued")
    expect(page.locator("#resume-job")).to_have_count(0)


def test_the_audit_trail_filters_by_who_what_object_and_when(live_server, page, screenshot):
    from dashboard.models import AuditEntry

    UserFactory(username="vera", role=VIEWERS)
    AuditEntry.objects.create(actor_name="ines", action="acknowledged alert", target="alert 7")
    AuditEntry.objects.create(actor_name="olivia", action="changed device status", target="DEV-1")

    log_in(page, live_server.url, "vera")
    page.click("header nav >> text=Audit")
    expect(page.locator("#audit-lines tr")).to_have_count(3)
    page.fill("input[name=who]", "ines")
    page.click("form.filters button[type=submit]")
    expect(page.locator("#audit-lines tr")).to_have_count(2)
    expect(page.locator("#audit-lines")).to_contain_text("alert 7")
    page.fill("input[name=who]", "")
    page.fill("input[name=object]", "DEV-1")
    page.click("form.filters button[type=submit]")
    expect(page.locator("#audit-lines")).to_contain_text("changed device status")
    expect(page.locator("#audit-lines")).not_to_contain_text("alert 7")
    screenshot(page, "audit-filtered")

    response = page.goto(f"{live_server.url}/console/audit/?since=last+week")
    assert response.status == 400
    expect(page.locator("#filter-errors")).to_contain_text("From (since)")
