"""Health banners: each appears when its condition holds and not otherwise; broker numbers
are "unknown", never 0, when the broker cannot be read; per-queue rates."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from django_apscheduler.models import DjangoJob, DjangoJobExecution

from dashboard.models import BulkJob, BulkSelection
from dashboard.selectors.health import health_banners
from ingest.broker.rates import queue_rates
from ingest.models import IngestMessage
from scheduler.models import CollectionRun, CollectionSource, SchedulerLeader
from tests.broker import management_api_available, publish_device_batch, publish_raw
from tests.factories import DeviceFactory
from tests.workers import wait_until, worker_thread

pytestmark = pytest.mark.django_db
CLOSED_PORT_URL = "http://127.0.0.1:1"


def _kinds(**kwargs) -> list[str]:
    return [banner.kind for banner in health_banners(**kwargs)]


def _banners(kind: str):
    return [banner for banner in health_banners() if banner.kind == kind]


def _panel(client) -> str:
    response = client.get("/console/overview/panel/")
    assert response.status_code == 200
    return response.content.decode()


# --- no consumers ---------------------------------------------------------------------------


@pytest.mark.usefixtures("committed_db")
def test_queues_nobody_consumes_are_banners_until_a_worker_runs(ingest_queue, viewer_client):
    titles = {banner.title for banner in _banners("no-consumers")}
    assert titles == {
        f"No consumers on {ingest_queue.queue}",
        f"No consumers on {ingest_queue.due_queue}",
        f"No consumers on {ingest_queue.dead_queue}",
    }  # the retry tiers have no consumer by design: never a banner
    content = _panel(viewer_client)
    assert content.count('data-kind="no-consumers"') == 3
    assert "Dead letters are not recorded: the worker&#x27;s dead-letter recorder is not running" in content

    with worker_thread(ingest_queue):
        assert wait_until(lambda: not _banners("no-consumers"), timeout=15)
        assert 'data-kind="no-consumers"' not in _panel(viewer_client)


# --- the broker unreachable ---------------------------------------------------------------------


def test_an_unreachable_broker_is_a_banner_and_every_broker_number_reads_unknown(viewer_client, settings):
    settings.RABBITMQ_PORT = 1
    settings.RABBITMQ_MANAGEMENT_URL = CLOSED_PORT_URL

    assert _kinds() == ["broker-unreachable"]
    content = viewer_client.get("/console/").content.decode()
    assert 'data-kind="broker-unreachable"' in content and "The broker is unreachable" in content
    assert '<div class="big" id="consumers">unknown</div>' in content
    assert 'id="queues-unknown"' in content and 'id="queue-table"' not in content
    assert "on the queue: unknown" in content
    # No rule reads missing depths as empty queues.
    assert "no-consumers" not in content and "stale-processing" not in content


def test_a_reachable_broker_is_no_banner(viewer_client, ingest_queue):
    assert "broker-unreachable" not in _kinds()
    content = _panel(viewer_client)
    assert "broker-unreachable" not in content and 'id="queue-table"' in content


# --- rates ------------------------------------------------------------------------------------------


def test_rates_are_unknown_when_the_management_api_cannot_be_read(viewer_client, ingest_queue, settings):
    settings.RABBITMQ_MANAGEMENT_URL = CLOSED_PORT_URL
    assert queue_rates() is None
    content = _panel(viewer_client)
    assert content.count('data-rate="publish">unknown') == len(ingest_queue.queue_names)
    assert content.count('data-rate="ack">unknown') == len(ingest_queue.queue_names)
    assert 'id="rates-unknown"' in content
    # The depths come over AMQP and are still known.
    assert 'id="queue-table"' in content


@pytest.mark.usefixtures("committed_db")
def test_publish_deliver_and_ack_rates_come_from_the_management_api(viewer_client, ingest_queue, settings):
    settings.RABBITMQ_MANAGEMENT_URL = settings.RABBITMQ_MANAGEMENT_URL or "http://127.0.0.1:15672"
    if not management_api_available():
        pytest.skip("RabbitMQ's management API is not running here")
    device = DeviceFactory()

    def main_rates():
        return (queue_rates() or {}).get(ingest_queue.queue)

    def flowing() -> bool:
        # A rate is the change between two of the API's samples (every 5 s): keep messages flowing.
        publish_device_batch(device_id=device.pk)
        rates = main_rates()
        return bool(rates and rates.publish > 0 and rates.deliver > 0 and rates.ack > 0)

    with worker_thread(ingest_queue):
        assert wait_until(flowing, timeout=40, interval=0.2)
    content = _panel(viewer_client)
    assert 'id="rates-unknown"' not in content
    row = re.search(rf'<tr data-queue="{re.escape(ingest_queue.queue)}">.*?</tr>', content, re.S).group(0)
    for rate in ("publish", "deliver", "ack"):
        assert re.search(rf'data-rate="{rate}">\d+\.\d<', row), row


# --- dead letters not recorded --------------------------------------------------------------------
# Covered with the real worker in tests/ingest/test_dead_letter_recording.py (the panel reads
# the "dead-letters-unrecorded" banner there); this is the banner's shape.


def test_dead_letters_waiting_with_no_recorder_are_a_banner(ingest_queue, settings):
    from tests.ingest.test_dead_letter_recording import _publish_with_headers

    settings.DEAD_LETTER_RECORDING_STALL_SECONDS = 2
    assert not _banners("dead-letters-unrecorded")
    _publish_with_headers(ingest_queue.dead_queue, b"left on the dead-letter queue", {})
    [banner] = _banners("dead-letters-unrecorded")
    assert banner.title == "Dead letters are arriving but not being recorded"
    assert "1 dead letters wait on the queue" in banner.detail
    assert banner.link == "/console/failed/?status=dead"


# --- processing stale -------------------------------------------------------------------------------


def _processed(seconds_ago: float) -> None:
    now = timezone.now()
    IngestMessage.objects.create(
        message_id=uuid.uuid4(),
        kind="device_batch",
        status="processed",
        received_at=now,
        processed_at=now - timedelta(seconds=seconds_ago),
    )


def test_last_processed_long_ago_while_messages_wait_is_a_banner(viewer_client, ingest_queue, settings):
    settings.CONSOLE_STALE_PROCESSING_SECONDS = 60
    _processed(300)
    assert not _banners("stale-processing")  # nothing waits: quiet, not stale

    publish_raw(b"{}")
    publish_raw(b"{}")
    [banner] = _banners("stale-processing")
    assert banner.title.startswith("Last processed 30") and banner.title.endswith(" s ago")
    assert banner.detail == "2 message(s) wait on the queues and none was stored in the last 60 s."
    assert 'data-kind="stale-processing"' in _panel(viewer_client)

    _processed(5)
    assert not _banners("stale-processing")


def test_messages_waiting_and_nothing_ever_processed_is_a_banner(ingest_queue):
    publish_raw(b"{}")
    [banner] = _banners("stale-processing")
    assert banner.title == "No message has ever been processed"


# --- scheduler jobs, bulk jobs -------------------------------------------------------------------------


def test_a_failing_scheduler_job_is_a_banner_until_it_succeeds(viewer_client):
    job = DjangoJob.objects.create(id="raise_alerts", next_run_time=timezone.now(), job_state=b"")
    DjangoJobExecution.objects.create(
        job=job, status=DjangoJobExecution.SUCCESS, run_time=timezone.now() - timedelta(minutes=2)
    )
    assert not _banners("job-failing")

    DjangoJobExecution.objects.create(
        job=job,
        status=DjangoJobExecution.ERROR,
        run_time=timezone.now() - timedelta(minutes=1),
        exception="OperationalError('connection refused')",
    )
    [banner] = _banners("job-failing")
    assert banner.title == "Scheduler job raise_alerts is failing"
    assert "OperationalError('connection refused')" in banner.detail
    assert "Scheduler job raise_alerts is failing" in _panel(viewer_client)

    DjangoJobExecution.objects.create(job=job, status=DjangoJobExecution.SUCCESS, run_time=timezone.now())
    assert not _banners("job-failing")


def test_a_stopped_scheduler_is_a_banner_a_never_started_one_is_not():
    assert "scheduler-stopped" not in _kinds()
    now = timezone.now()
    SchedulerLeader.objects.create(instance="host:1", since=now - timedelta(hours=1), heartbeat_at=now)
    assert "scheduler-stopped" not in _kinds()
    SchedulerLeader.objects.filter(pk=1).update(heartbeat_at=now - timedelta(minutes=10))
    [banner] = _banners("scheduler-stopped")
    assert "Last heartbeat" in banner.detail


def _bulk_job(status: str, finished_hours_ago: float) -> BulkJob:
    return BulkJob.objects.create(
        action="requeue",
        selection=BulkSelection.objects.create(scope=BulkSelection.Scope.SELECTED, dead_letter_ids=[1, 2]),
        description="2 dead letters",
        status=status,
        total=2,
        done=1,
        error="broker unreachable",
        finished_at=timezone.now() - timedelta(hours=finished_hours_ago),
    )


def test_a_bulk_job_that_failed_lately_is_a_banner_linking_to_it(viewer_client, settings):
    settings.CONSOLE_FAILED_JOB_BANNER_HOURS = 24
    _bulk_job(BulkJob.Status.DONE, 1)
    _bulk_job(BulkJob.Status.FAILED, 30)  # long ago: history, not an alarm
    assert not _banners("job-failing")

    failed = _bulk_job(BulkJob.Status.FAILED, 1)
    [banner] = _banners("job-failing")
    assert banner.title == f"Bulk job {failed.pk} failed"
    assert "broker unreachable (1 of 2 done)" in banner.detail
    assert banner.link == f"/console/jobs/{failed.pk}/"
    assert f'href="/console/jobs/{failed.pk}/"' in _panel(viewer_client)


# --- collection sources ---------------------------------------------------------------------------------


def _runs(source, statuses: list[str]) -> None:
    now = timezone.now()
    for minutes_ago, status in enumerate(statuses):  # newest first
        CollectionRun.objects.create(
            source=source,
            started_at=now - timedelta(minutes=minutes_ago),
            finished_at=now - timedelta(minutes=minutes_ago),
            status=status,
            error="HTTP 502 from partner" if status == "failed" else "",
        )


def test_a_collection_source_failing_repeatedly_is_a_banner(settings):
    settings.CONSOLE_SOURCE_FAILING_RUNS = 3
    device = DeviceFactory()
    flaky = CollectionSource.objects.create(name="flaky", url="https://partner.example/a", device=device)
    _runs(flaky, ["failed", "failed", "ok", "failed"])  # failed twice in a row, then recovered before
    broken = CollectionSource.objects.create(name="broken", url="https://partner.example/b", device=device)
    _runs(broken, ["failed", "failed", "failed"])
    off = CollectionSource.objects.create(
        name="off", url="https://partner.example/c", device=device, is_enabled=False
    )
    _runs(off, ["failed", "failed", "failed"])

    [banner] = _banners("source-failing")

    assert banner.title == "Collection source broken is failing"
    assert "Its last 3 runs failed" in banner.detail and "HTTP 502 from partner" in banner.detail
    _runs(flaky, ["failed"])  # now three in a row
    assert {banner.title for banner in _banners("source-failing")} == {
        "Collection source broken is failing",
        "Collection source flaky is failing",
    }


# --- the compact line on every page ------------------------------------------------------------------------


def test_every_console_page_shows_the_banners_in_one_line(viewer_client, ingest_queue):
    content = viewer_client.get("/console/jobs/").content.decode()
    assert 'id="health-strip"' in content
    assert "3 health problems:" in content and f"No consumers on {ingest_queue.queue}" in content
    assert 'href="/console/#health"' in content
    # The overview shows them in full instead.
    overview = viewer_client.get("/console/").content.decode()
    assert 'id="health-strip"' not in overview and overview.count('data-kind="no-consumers"') == 3


def test_no_line_when_all_is_well_and_none_before_login(client, viewer_client, monkeypatch):
    monkeypatch.setattr("dashboard.selectors.health.health_banners", lambda **kwargs: [])
    assert 'id="health-strip"' not in viewer_client.get("/console/jobs/").content.decode()
    assert 'id="health-strip"' not in client.get("/console/login/").content.decode()


def test_the_line_reuses_one_reading_for_a_few_seconds(viewer_client, monkeypatch, settings):
    from dashboard.context_processors import _STRIP_BANNERS
    from dashboard.selectors.health import HealthBanner

    readings = []

    def reading(**kwargs):
        readings.append(1)
        return [HealthBanner("broker-unreachable", "The broker is unreachable", "")]

    monkeypatch.setattr("dashboard.selectors.health.health_banners", reading)
    settings.CONSOLE_HEALTH_CACHE_SECONDS = 60
    _STRIP_BANNERS.clear()
    try:
        for _ in range(3):
            assert "The broker is unreachable" in viewer_client.get("/console/jobs/").content.decode()
    finally:
        _STRIP_BANNERS.clear()
    assert len(readings) == 1


def test_a_database_error_while_reading_health_leaves_the_line_out_not_the_page(viewer_client, monkeypatch):
    from django.db import OperationalError

    def failing(**kwargs):
        raise OperationalError("the database is gone")

    monkeypatch.setattr("dashboard.selectors.health.health_banners", failing)
    response = viewer_client.get("/console/jobs/")
    assert response.status_code == 200 and 'id="health-strip"' not in response.content.decode()


def test_a_queue_not_declared_yet_has_no_consumers_and_unacked_messages_count_as_waiting():
    from dashboard.selectors.health import messages_waiting
    from ingest.broker.monitoring import QueueDepth

    queues = [
        QueueDepth("q", "main", 0, 7, 1),  # a worker holds 7, stuck on its batch
        QueueDepth("q.retry.1s", "retry", 3, None, 0),  # a tier: no consumer by design
        QueueDepth("q.due", "retry due", 2, None, 1),
        QueueDepth("q.dead", "dead letters", None, None, None),  # not declared yet
    ]
    [banner] = [banner for banner in health_banners(queues=queues) if banner.kind == "no-consumers"]
    assert banner.title == "No consumers on q.dead"
    assert banner.detail.startswith("The queue is not declared yet. Dead letters are not recorded")
    assert messages_waiting(queues) == 9
    assert messages_waiting(None) is None
    assert messages_waiting([QueueDepth("q", "main", None, None, None)]) is None
