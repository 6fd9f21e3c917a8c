"""Health at a glance, in a real browser: red banners that lead somewhere, the compact line on
every page, "unknown" when the broker is down, per-queue rates, and the retry tiers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_apscheduler.models import DjangoJob
from playwright.sync_api import expect

from dashboard.models import BulkJob, BulkSelection
from ingest.models import IngestMessage
from scheduler.models import CollectionRun, CollectionSource
from tests.broker import publish_device_batch
from tests.browser.conftest import log_in
from tests.factories import DeviceFactory, UserFactory, reading_record
from tests.ingest.test_dead_letter_recording import _publish_with_headers
from tests.retry_tiers import slow_retry_topology
from tests.workers import wait_until, worker_thread

pytestmark = pytest.mark.usefixtures("committed_db")

OPERATORS = "Console operators"
VIEWERS = "Console viewers"
MISSING_DEVICE_ID = 987_654


def _failing_source(device) -> None:
    source = CollectionSource.objects.create(name="partner-a", url="https://partner.example/a", device=device)
    now = timezone.now()
    for minutes in range(3):
        CollectionRun.objects.create(
            source=source,
            started_at=now - timedelta(minutes=minutes),
            finished_at=now - timedelta(minutes=minutes),
            status="failed",
            error="HTTP 502 from partner",
        )


def test_operator_reads_the_banners_follows_them_and_sees_them_clear(
    live_server, page, screenshot, ingest_queue
):
    UserFactory(username="olivia", role=OPERATORS)
    device = DeviceFactory(serial_no="VIT-0042")
    _failing_source(device)
    DjangoJob.objects.create(id="raise_alerts", next_run_time=None, job_state=b"")  # paused
    job = BulkJob.objects.create(
        action="requeue",
        selection=BulkSelection.objects.create(scope=BulkSelection.Scope.SELECTED, dead_letter_ids=[1, 2]),
        description="2 dead letters",
        status=BulkJob.Status.FAILED,
        total=2,
        error="the broker refused the copies",
        finished_at=timezone.now(),
    )
    publish_device_batch(device_id=device.pk, readings=[reading_record(1)])  # waits: nobody consumes
    _publish_with_headers(ingest_queue.dead_queue, b"a dead letter nobody records", {})

    log_in(page, live_server.url, "olivia")
    banners = page.locator("#health .health-banner")
    expect(page.locator('.health-banner[data-kind="no-consumers"]')).to_have_count(3)
    expect(page.locator('.health-banner[data-kind="no-consumers"]').first).to_contain_text(
        f"No consumers on {ingest_queue.queue}"
    )
    expect(page.locator('.health-banner[data-kind="stale-processing"]')).to_contain_text(
        "No message has ever been processed"
    )
    expect(page.locator('.health-banner[data-kind="stale-processing"]')).to_contain_text(
        "1 message(s) wait on the queues"
    )
    expect(page.locator('.health-banner[data-kind="job-paused"]')).to_contain_text(
        "While it is paused no offline or inactivity alerts will be raised."
    )
    expect(page.locator('.health-banner[data-kind="source-failing"]')).to_contain_text(
        "Collection source partner-a is failing"
    )
    expect(page.locator('.health-banner[data-kind="source-failing"]')).to_contain_text(
        "HTTP 502 from partner"
    )
    expect(page.locator('.health-banner[data-kind="job-failing"]')).to_contain_text(
        f"Bulk job {job.pk} failed"
    )
    dead_letters = page.locator('.health-banner[data-kind="dead-letters-unrecorded"]')
    expect(dead_letters).to_contain_text("Dead letters are arriving but not being recorded")
    expect(dead_letters).to_contain_text("1 dead letters wait on the queue and no worker has recorded any")
    expect(dead_letters.locator("a")).to_have_attribute("href", "/console/failed/?status=dead")
    expect(banners).to_have_count(8)
    expect(page.locator("#health")).to_have_attribute("aria-label", "Health problems")
    # Every queue's depth and rates, in the table the banners point at.
    expect(page.locator(f'#queue-table tr[data-queue="{ingest_queue.queue}"]')).to_contain_text("main")
    expect(page.locator("#queue-table th")).to_contain_text(["Publish /s", "Deliver /s", "Ack /s"])
    screenshot(page, "health-banners")

    # A banner leads to where the operator acts: the failed bulk job.
    page.locator('.health-banner[data-kind="job-failing"] a').click()
    expect(page.locator("h1")).to_have_text(job.title)
    # Every other page carries the problems in one line.
    strip = page.locator("#health-strip")
    expect(strip).to_contain_text("8 health problems:")
    expect(strip).to_contain_text(f"No consumers on {ingest_queue.queue}")
    screenshot(page, "health-strip")
    strip.get_by_role("link", name="see the overview").click()
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("#health-strip")).to_have_count(0)

    # A worker starts: its queues have consumers and the waiting message is stored; the live
    # panel drops those banners by itself.
    with worker_thread(ingest_queue):
        assert wait_until(lambda: IngestMessage.objects.filter(status="processed").exists())
        expect(page.locator('.health-banner[data-kind="no-consumers"]')).to_have_count(0, timeout=15_000)
        expect(page.locator('.health-banner[data-kind="stale-processing"]')).to_have_count(0)
        expect(dead_letters).to_have_count(0)  # the worker's recorder caught up
        expect(page.locator("#consumers")).to_have_text("1")
    expect(banners).to_have_count(3)  # paused job, failing source, failed bulk job


def test_a_broker_that_cannot_be_reached_reads_unknown_never_zero(live_server, page, screenshot, settings):
    UserFactory(username="olivia", role=OPERATORS)
    settings.RABBITMQ_PORT = 1
    settings.RABBITMQ_MANAGEMENT_URL = "http://127.0.0.1:1"

    log_in(page, live_server.url, "olivia")

    expect(page.locator('.health-banner[data-kind="broker-unreachable"]')).to_contain_text(
        "The broker is unreachable"
    )
    expect(page.locator("#consumers")).to_have_text("unknown")
    expect(page.locator("#queues-unknown")).to_contain_text("queue depths, consumers and rates unknown")
    expect(page.locator("#dead-letter-queue-waiting")).to_have_text("on the queue: unknown")
    expect(page.locator("#queue-table")).to_have_count(0)
    expect(page.locator('.health-banner[data-kind="no-consumers"]')).to_have_count(0)
    screenshot(page, "health-broker-unreachable")
    page.goto(f"{live_server.url}/console/jobs/")
    expect(page.locator("#health-strip")).to_contain_text("The broker is unreachable")


@pytest.fixture
def slow_tiers(settings, broker_topology):
    with slow_retry_topology(settings, delay=600.0) as topology:
        yield topology


def test_operator_browses_the_retry_tiers_and_retries_a_message_now(
    live_server, page, screenshot, slow_tiers
):
    UserFactory(username="olivia", role=OPERATORS)
    tier = slow_tiers.retry_queues[0]
    with worker_thread(slow_tiers):
        poison = publish_device_batch(device_id=MISSING_DEVICE_ID, readings=[reading_record(1)])
        assert wait_until(
            lambda: IngestMessage.objects.filter(
                message_id=poison.message_id, retry_due_at__isnull=False
            ).exists()
        )
        row = IngestMessage.objects.get(message_id=poison.message_id)

        log_in(page, live_server.url, "olivia")
        expect(page.locator("#retrying-messages")).to_have_text("1")
        # The overview's queue table leads to the tier.
        page.locator(f'#queue-table tr[data-queue="{tier}"] a').click()
        expect(page.locator("h1")).to_have_text("Retries")
        section = page.locator(f'section[data-tier="{tier}"]')
        expect(section.locator("h2")).to_contain_text("Retry in 600 s")
        expect(section.locator(".tier-waiting")).to_have_text("1 waiting")
        expect(section.locator(".tier-on-broker")).to_have_text("1")
        message = section.locator(f'tr[data-message="{poison.message_id}"]')
        expect(message.locator(".retry-error")).to_contain_text("IntegrityError")
        expect(message.locator(".retry-error")).to_contain_text("devices")
        expect(message.locator(".retry-due time")).to_have_text(
            timezone.localtime(row.retry_due_at).strftime("%Y-%m-%d %H:%M:%S %Z")
        )
        expect(message.locator(".retry-due")).to_contain_text(" s")
        screenshot(page, "retries")

        DeviceFactory(id=MISSING_DEVICE_ID)  # the cause is fixed
        message.get_by_role("button", name="Retry now").click()
        expect(page.locator(".messages")).to_contain_text(f"Message {poison.message_id} moved from {tier}")
        assert wait_until(
            lambda: (
                IngestMessage.objects.get(message_id=poison.message_id).status
                == IngestMessage.Status.PROCESSED
            )
        )
    page.reload()
    expect(section.locator(".empty")).to_have_text("Nothing waits in this tier.")
    expect(section.locator(".tier-on-broker")).to_have_text("0")
    screenshot(page, "retries-after-retry-now")
    page.goto(f"{live_server.url}/console/audit/")
    expect(page.locator("main")).to_contain_text(f"message {poison.message_id}")
    expect(page.locator("main")).to_contain_text("retried now")


def test_a_viewer_sees_the_retry_tiers_but_no_retry_now(live_server, page, slow_tiers):
    UserFactory(username="victor", role=VIEWERS)
    with worker_thread(slow_tiers):
        poison = publish_device_batch(device_id=MISSING_DEVICE_ID, readings=[reading_record(1)])
        assert wait_until(
            lambda: IngestMessage.objects.filter(
                message_id=poison.message_id, retry_due_at__isnull=False
            ).exists()
        )
    log_in(page, live_server.url, "victor")
    page.goto(f"{live_server.url}/console/retries/")
    message = page.locator(f'tr[data-message="{poison.message_id}"]')
    expect(message).to_contain_text("IntegrityError")
    expect(page.get_by_role("button", name="Retry now")).to_have_count(0)
