"""The failed-message workbench over real dead letters, the real broker and bulk jobs."""

from __future__ import annotations

import json
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dashboard.models import BulkJob
from dashboard.services.bulk_jobs import bulk_job_cancel, bulk_job_run, bulk_jobs_run_pending
from ingest.models import DeadLetter, DeadLetterAction
from tests.broker import broker_refusing_publishes_to, management_api_available, queue_depth, queued_messages
from tests.dashboard.bulk import bulk_job_planned
from tests.dashboard.edits import requeue_edited
from tests.factories import DeadLetterFactory

pytestmark = pytest.mark.django_db
# A job works through its chunks in threads of its own, each with its own database
# connection: the rows must be committed for them to see, as in production.
# Real commits (a job and the worker commit their own work), customer tables emptied after.
RUNS_JOBS = pytest.mark.usefixtures("committed_db")


def test_list_filters_by_status_error_class_device_and_text(viewer_client):
    integrity = DeadLetterFactory(device_id=7)
    data = DeadLetterFactory(error_class="django.db.utils.DataError", error_message="value too long for unit")
    DeadLetterFactory(status=DeadLetter.Status.DISCARDED)

    def listed(query: str) -> set[str]:
        content = viewer_client.get(f"/console/failed/?{query}").content.decode()
        return {
            str(letter.message_id)[:10]
            for letter in DeadLetter.objects.all()
            if str(letter.message_id)[:10] in content
        }

    assert listed("status=dead") == {str(integrity.message_id)[:10], str(data.message_id)[:10]}
    assert listed("error_class=DataError") == {str(data.message_id)[:10]}
    assert listed("device=7") == {str(integrity.message_id)[:10]}
    assert listed("q=too+long") == {str(data.message_id)[:10]}
    assert listed("q=heart_rate&status=dead") == {str(integrity.message_id)[:10], str(data.message_id)[:10]}


def test_list_pages_by_keyset_without_counting(viewer_client):
    letters = DeadLetterFactory.create_batch(55)
    with CaptureQueriesContext(connection) as queries:
        first = viewer_client.get("/console/failed/")
    assert not [query for query in queries if "COUNT(" in query["sql"].upper()]
    assert first.context["page"].has_next
    assert len(first.context["page"].rows) == 50
    second = viewer_client.get(f"/console/failed/?before={first.context['page'].next_cursor}")
    assert [row.pk for row in second.context["page"].rows] == sorted(
        (letter.pk for letter in letters), reverse=True
    )[50:]
    assert not second.context["page"].has_next


def test_groups_count_failures_that_share_a_cause(viewer_client):
    DeadLetterFactory.create_batch(3)  # same class, messages differ only in the device id
    DeadLetterFactory(error_class="django.db.utils.DataError", error_message="value too long")
    groups = viewer_client.get("/console/failed/groups/").context["groups"]
    assert [(group.error_class.rsplit(".", 1)[-1], group.count) for group in groups] == [
        ("IntegrityError", 3),
        ("DataError", 1),
    ]


def test_detail_shows_payload_headers_traceback_failures_and_audit(viewer_client):
    dead = DeadLetterFactory(
        headers={"x-failures": ["2026-11-23T07:00:00+00:00", "2026-11-23T07:00:01+00:00"]}
    )
    DeadLetterAction.objects.create(dead_letter=dead, action="recorded", reason="IntegrityError")
    content = viewer_client.get(f"/console/failed/{dead.pk}/").content.decode()
    assert "&quot;device_id&quot;: 987654" in content  # pretty-printed payload
    assert "2026-11-23T07:00:01+00:00" in content
    assert "Traceback (most recent call last)" in content
    assert "Recorded" in content


def test_requeue_publishes_then_marks_and_audits(operator_client, ingest_queue):
    dead = DeadLetterFactory()
    response = operator_client.post(
        f"/console/failed/{dead.pk}/requeue/", {"reason": "fixed the device"}, follow=True
    )
    assert b"requeued (the broker confirmed it)" in response.content
    dead.refresh_from_db()
    assert dead.status == DeadLetter.Status.REQUEUED
    [(properties, body)] = queued_messages(ingest_queue.queue)
    assert properties.message_id == str(dead.message_id) and body == bytes(dead.body)
    assert dead.actions.get().actor_name == "olivia"


def test_edit_and_requeue_keeps_the_original_and_the_reason(operator_client, ingest_queue):
    dead = DeadLetterFactory()
    edited = json.loads(dead.body_text)
    edited["readings"][0]["value"] = 71.0
    requeue_edited(operator_client, dead, edited, reason="typo")
    dead.refresh_from_db()
    assert dead.status == DeadLetter.Status.REQUEUED
    action = dead.actions.get()
    assert (action.action, action.reason) == ("edited_requeued", "typo")
    assert json.loads(action.previous_body_text)["readings"][0]["value"] == 70.0
    [(_, body)] = queued_messages(ingest_queue.queue)
    assert json.loads(body)["readings"][0]["value"] == 71.0


def test_an_edit_that_is_not_json_is_refused_with_the_reason(operator_client, ingest_queue):
    dead = DeadLetterFactory()
    response = operator_client.post(
        f"/console/failed/{dead.pk}/requeue/", {"edit": "1", "body": "{oops", "reason": "typo"}, follow=True
    )
    assert b"not a valid message" in response.content
    dead.refresh_from_db()
    assert dead.status == DeadLetter.Status.DEAD
    assert queue_depth(ingest_queue.queue) == 0


def test_discard_without_a_reason_is_refused(operator_client):
    dead = DeadLetterFactory()
    response = operator_client.post(f"/console/failed/{dead.pk}/discard/", {"reason": ""}, follow=True)
    assert b"a reason is required" in response.content
    dead.refresh_from_db()
    assert dead.status == DeadLetter.Status.DEAD
    operator_client.post(f"/console/failed/{dead.pk}/discard/", {"reason": "test device"})
    dead.refresh_from_db()
    assert dead.status == DeadLetter.Status.DISCARDED


def _plan_and_confirm(client, plan: dict, confirm: dict | None = None):
    """Ask for a bulk action on the console, then confirm the plan it shows."""
    planned = client.post("/console/failed/bulk/", plan)
    assert planned.status_code == 302 and "/console/failed/bulk/plans/" in planned["Location"], planned
    return client.post(planned["Location"] + "confirm/", confirm or {})


@RUNS_JOBS
def test_bulk_requeue_of_a_selection_runs_as_a_job(operator_client, ingest_queue):
    chosen = DeadLetterFactory.create_batch(3)
    untouched = DeadLetterFactory()
    response = _plan_and_confirm(
        operator_client, {"action": "requeue", "scope": "selected", "ids": [letter.pk for letter in chosen]}
    )
    job = BulkJob.objects.get()
    assert response["Location"] == f"/console/jobs/{job.pk}/"
    assert (job.status, job.total) == (BulkJob.Status.QUEUED, 3)
    assert DeadLetter.objects.filter(status="requeued").count() == 0  # nothing before the job runs

    assert bulk_jobs_run_pending() == 1

    job.refresh_from_db()
    assert (job.status, job.done, job.skipped) == (BulkJob.Status.DONE, 3, 0)
    assert set(DeadLetter.objects.filter(status="requeued")) == set(chosen)
    assert DeadLetter.objects.get(pk=untouched.pk).status == "dead"
    assert queue_depth(ingest_queue.queue) == 3
    page = operator_client.get(f"/console/jobs/{job.pk}/?fragment=1").content.decode()
    assert "3 done, 0 skipped of 3" in page


@RUNS_JOBS
def test_bulk_discard_of_everything_matching_a_filter(operator_client):
    DeadLetterFactory.create_batch(4, error_class="django.db.utils.DataError", error_message="value too long")
    kept = DeadLetterFactory()
    _plan_and_confirm(
        operator_client,
        {"action": "discard", "scope": "filter", "error_class": "DataError"},
        {"reason": "bad firmware", "confirmed_count": "4"},
    )
    bulk_jobs_run_pending()
    assert DeadLetter.objects.filter(status="discarded").count() == 4
    assert DeadLetter.objects.get(pk=kept.pk).status == "dead"
    assert set(DeadLetterAction.objects.values_list("reason", flat=True)) == {"bad firmware"}


@RUNS_JOBS
def test_bulk_requeue_of_a_group(operator_client, ingest_queue):
    group = DeadLetterFactory.create_batch(3)
    DeadLetterFactory(error_class="django.db.utils.DataError", error_message="other")
    _plan_and_confirm(
        operator_client, {"action": "requeue", "scope": "group", "fingerprint": group[0].fingerprint}
    )
    bulk_jobs_run_pending()
    assert set(DeadLetter.objects.filter(status="requeued")) == set(group)


def test_bulk_discard_needs_a_reason_and_the_count_and_an_empty_selection_is_refused(operator_client):
    dead = DeadLetterFactory()
    planned = operator_client.post(
        "/console/failed/bulk/", {"action": "discard", "scope": "selected", "ids": [dead.pk]}
    )
    confirm = planned["Location"] + "confirm/"
    response = operator_client.post(confirm, {"confirmed_count": "1"}, follow=True)
    assert b"a reason is required" in response.content
    response = operator_client.post(confirm, {"reason": "test device"}, follow=True)
    assert b"Type the number of messages, 1, to confirm the discard" in response.content
    response = operator_client.post(confirm, {"reason": "test device", "confirmed_count": "2"}, follow=True)
    assert b"Type the number of messages" in response.content
    assert not BulkJob.objects.exists()
    response = operator_client.post(
        "/console/failed/bulk/", {"action": "requeue", "scope": "selected"}, follow=True
    )
    assert b"no dead letters match" in response.content
    assert not BulkJob.objects.exists()


@RUNS_JOBS
def test_a_job_is_bounded_in_rate_and_works_in_chunks(operator, ingest_queue):
    DeadLetterFactory.create_batch(30)
    job = bulk_job_planned(actor=operator, action="requeue", status="dead")
    started = time.monotonic()
    bulk_job_run(job=job, chunk_size=10, max_per_second=60)
    assert time.monotonic() - started >= 0.45  # 30 messages at 60/s
    assert (job.status, job.done) == (BulkJob.Status.DONE, 30)


def test_a_cancelled_job_stops_and_a_queued_one_never_starts(operator):
    DeadLetterFactory.create_batch(5)
    job = bulk_job_planned(actor=operator, action="discard", reason="r")
    bulk_job_cancel(job_id=job.pk, actor=operator)
    assert bulk_jobs_run_pending() == 0
    job.refresh_from_db()
    assert job.status == BulkJob.Status.CANCELLED
    assert DeadLetter.objects.filter(status="dead").count() == 5


@RUNS_JOBS
def test_a_job_whose_broker_is_down_fails_and_marks_nothing(
    operator, operator_client, settings, ingest_queue
):
    from ingest.broker.publisher import publisher_reset

    DeadLetterFactory.create_batch(3)
    job = bulk_job_planned(actor=operator, action="requeue")
    broker_port = settings.RABBITMQ_PORT
    settings.RABBITMQ_PORT = 1
    publisher_reset()
    try:
        bulk_job_run(job=job)
    finally:
        settings.RABBITMQ_PORT = broker_port
        publisher_reset()
    assert job.status == BulkJob.Status.FAILED
    assert "broker did not confirm" in job.error
    assert DeadLetter.objects.filter(status="requeued").count() == 0
    assert DeadLetter.objects.filter(status="dead").count() == 3  # nothing lost
    page = operator_client.get(f"/console/jobs/{job.pk}/").content.decode()
    assert 'id="job-status">failed' in page
    assert "broker did not confirm" in page
    assert 'id="cancel-job"' not in page  # finished: nothing to cancel


@RUNS_JOBS
def test_cancelling_a_finished_job_is_refused(operator_client, operator):
    DeadLetterFactory()
    job = bulk_job_planned(actor=operator, action="discard", reason="r")
    bulk_jobs_run_pending()
    response = operator_client.post(f"/console/jobs/{job.pk}/cancel/", follow=True)
    assert b"already done" in response.content


@RUNS_JOBS
def test_a_running_job_whose_runner_died_is_taken_over_and_a_live_one_is_not(operator, ingest_queue):
    from datetime import timedelta

    from django.utils import timezone

    DeadLetterFactory.create_batch(4)
    orphan = bulk_job_planned(actor=operator, action="discard", reason="r")
    BulkJob.objects.filter(pk=orphan.pk).update(
        status="running", heartbeat_at=timezone.now() - timedelta(minutes=10)
    )
    live = bulk_job_planned(actor=operator, action="discard", reason="r")
    BulkJob.objects.filter(pk=live.pk).update(status="running", heartbeat_at=timezone.now())

    assert bulk_jobs_run_pending() == 1

    orphan.refresh_from_db()
    live.refresh_from_db()
    assert (orphan.status, orphan.done) == ("done", 4)
    assert live.status == "running"


def test_a_bulk_job_is_audited_once_with_its_count_and_a_link(operator_client):
    from dashboard.models import AuditEntry

    DeadLetterFactory.create_batch(2, error_class="django.db.utils.DataError", error_message="too long")
    _plan_and_confirm(
        operator_client,
        {"action": "discard", "scope": "filter", "error_class": "DataError"},
        {"reason": "bad firmware", "confirmed_count": "2"},
    )
    job = BulkJob.objects.get()
    entry = AuditEntry.objects.get()
    assert (entry.actor_name, entry.action, entry.target, entry.bulk_job) == (
        "olivia",
        "bulk discard",
        f"job {job.pk}",
        job,
    )
    assert entry.detail == (
        "Discard 2 failed messages: DataError, matching error class DataError; reason: bad firmware"
    )


@RUNS_JOBS
@pytest.mark.skipif(not management_api_available(), reason="needs RabbitMQ's management API")
def test_a_job_the_broker_refuses_part_way_marks_and_counts_exactly_the_confirmed(operator, ingest_queue):
    letters = DeadLetterFactory.create_batch(20)
    job = bulk_job_planned(actor=operator, action="requeue")

    with broker_refusing_publishes_to(ingest_queue.queue, keep=5):  # takes five, nacks the rest
        bulk_job_run(job=job, chunk_size=100)

    assert (job.status, job.done) == (BulkJob.Status.FAILED, 5)
    assert "broker did not confirm" in job.error and "5 requeued, 15 left dead" in job.error
    requeued = DeadLetter.objects.filter(status="requeued")
    queued = {properties.message_id for properties, _ in queued_messages(ingest_queue.queue)}
    assert {str(letter.message_id) for letter in requeued} == queued and len(queued) == 5
    assert DeadLetter.objects.filter(status="dead").count() == 15
    assert set(
        DeadLetterAction.objects.filter(action=DeadLetterAction.Action.REQUEUED).values_list(
            "dead_letter_id", flat=True
        )
    ) == {letter.pk for letter in requeued}
    assert {letter.pk for letter in letters} >= {letter.pk for letter in requeued}
