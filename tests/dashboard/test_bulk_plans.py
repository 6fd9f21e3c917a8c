"""Bulk actions you can trust: a plan first, exactly its ids acted on, a requeue that pauses itself."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import pytest
from django.utils import timezone

from dashboard.models import AuditEntry, BulkJob, BulkPlan
from dashboard.services.bulk_jobs import bulk_job_cancel, bulk_job_resume, bulk_job_run, bulk_plan_confirm
from ingest.models import DeadLetter, DeadLetterAction, IngestMessage
from tests.dashboard.bulk import bulk_job_planned, bulk_plan_for
from tests.factories import DeadLetterFactory, DeviceFactory, UserFactory
from tests.workers import wait_until, worker_thread

pytestmark = pytest.mark.django_db
# Real commits (a job and the worker commit their own work), customer tables emptied after.
RUNS_JOBS = pytest.mark.usefixtures("committed_db")


def _plan(client, **data) -> str:
    response = client.post("/console/failed/bulk/", data)
    assert response.status_code == 302, response
    return response["Location"]


def test_the_plan_shows_the_count_by_error_class_and_a_sample_and_does_nothing(operator_client):
    DeadLetterFactory.create_batch(3)
    DeadLetterFactory.create_batch(2, error_class="django.db.utils.DataError", error_message="too long")
    DeadLetterFactory(status=DeadLetter.Status.DISCARDED)
    plan_url = _plan(operator_client, action="requeue", scope="filter", status="dead")

    page = operator_client.get(plan_url)

    content = page.content.decode()
    assert page.status_code == 200
    assert "Requeue 5 failed messages?" in content
    rows = [(error_class, count) for error_class, count in page.context["error_classes"]]
    assert rows == [("django.db.utils.IntegrityError", "3"), ("django.db.utils.DataError", "2")]
    assert len(page.context["sample"]) == 5
    assert not BulkJob.objects.exists()
    assert DeadLetter.objects.filter(status="dead").count() == 5


@RUNS_JOBS
def test_a_message_that_fails_after_the_plan_is_never_touched(operator, ingest_queue):
    planned = DeadLetterFactory.create_batch(3, error_class="django.db.utils.DataError", error_message="x")
    plan = bulk_plan_for(actor=operator, action="requeue", error_class="DataError")
    late = DeadLetterFactory(error_class="django.db.utils.DataError", error_message="x")  # matches the filter

    job = bulk_plan_confirm(token=plan.token, actor=operator)
    bulk_job_run(job=job)

    assert (job.status, job.total, job.done) == (BulkJob.Status.DONE, 3, 3)
    assert set(DeadLetter.objects.filter(status="requeued")) == set(planned)
    late.refresh_from_db()
    assert late.status == DeadLetter.Status.DEAD


def test_a_changed_token_another_operators_plan_an_expired_or_used_plan_are_refused(
    operator_client, operator
):
    DeadLetterFactory.create_batch(2)
    plan = bulk_plan_for(actor=operator, action="requeue")
    other = UserFactory(username="oscar", role="Console operators")
    others_plan = bulk_plan_for(actor=other, action="requeue")

    tampered = operator_client.post(f"/console/failed/bulk/plans/{plan.token[:-2]}xx/confirm/")
    assert tampered.status_code == 404
    assert "no such plan of yours" in tampered.content.decode()
    assert operator_client.post(f"/console/failed/bulk/plans/{others_plan.token}/confirm/").status_code == 404
    assert operator_client.get(f"/console/failed/bulk/plans/{others_plan.token}/").status_code == 404
    assert not BulkJob.objects.exists()

    BulkPlan.objects.filter(pk=plan.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = operator_client.post(f"/console/failed/bulk/plans/{plan.token}/confirm/")
    assert expired.status_code == 410
    assert "This plan has expired" in expired.content.decode()
    assert not BulkJob.objects.exists()

    BulkPlan.objects.filter(pk=plan.pk).update(expires_at=timezone.now() + timedelta(minutes=5))
    assert operator_client.post(f"/console/failed/bulk/plans/{plan.token}/confirm/").status_code == 302
    again = operator_client.post(f"/console/failed/bulk/plans/{plan.token}/confirm/")
    assert again.status_code == 409
    assert BulkJob.objects.count() == 1


def test_a_viewer_may_not_plan_or_confirm(viewer_client, viewer, operator):
    dead = DeadLetterFactory()
    for action in ("requeue", "discard"):
        response = viewer_client.post(
            "/console/failed/bulk/", {"action": action, "scope": "selected", "ids": [dead.pk]}
        )
        assert response.status_code == 403
    plan = bulk_plan_for(actor=viewer, action="discard")  # even a plan of their own
    response = viewer_client.post(
        f"/console/failed/bulk/plans/{plan.token}/confirm/", {"reason": "r", "confirmed_count": "1"}
    )
    assert response.status_code == 403
    assert (
        "may look, not act" in viewer_client.get(f"/console/failed/bulk/plans/{plan.token}/").content.decode()
    )
    assert not BulkJob.objects.exists()


@RUNS_JOBS
def test_a_bulk_job_is_one_audit_entry_not_one_per_message(operator, viewer_client):
    DeadLetterFactory.create_batch(30)
    job = bulk_job_planned(actor=operator, action="discard", reason="test devices")
    bulk_job_run(job=job)
    assert DeadLetterAction.objects.filter(bulk_job_id=job.pk).count() == 30  # kept on each message

    lines = viewer_client.get("/console/audit/").context["page"].rows

    assert [(line.action, line.target, line.link) for line in lines] == [
        ("bulk discard", f"job {job.pk}", f"/console/jobs/{job.pk}/")
    ]
    assert lines[0].detail.startswith("Discard 30 failed messages: IntegrityError")


@RUNS_JOBS
def test_a_requeue_whose_messages_fail_again_pauses_and_says_why(operator, operator_client, ingest_queue):
    # Bodies the worker cannot even decode: dead-lettered again at once, every one.
    DeadLetterFactory.create_batch(40, body=b"not a message", error_class="UndecodableMessage")
    job = bulk_job_planned(actor=operator, action="requeue")

    with worker_thread(ingest_queue):
        bulk_job_run(job=job, chunk_size=4, max_per_second=8, pause_failure_ratio=0.2, pause_min_sample=8)
        # What it requeued before pausing comes back too; the rest was never touched.
        assert wait_until(lambda: DeadLetter.objects.filter(status="dead").count() == 40)

    job.refresh_from_db()
    assert job.status == BulkJob.Status.PAUSED
    assert 8 <= job.done < 40
    assert "came back as dead letters" in job.paused_reason
    assert not IngestMessage.objects.filter(status="processed").exists()
    page = operator_client.get(f"/console/jobs/{job.pk}/").content.decode()
    assert 'id="job-paused-reason"' in page and "came back as dead letters" in page
    assert 'id="resume-job"' in page and 'id="cancel-job"' in page

    # Resumed (the cause fixed: here, no worker to fail them), it measures afresh from where
    # it stopped and finishes the rest, never revisiting what it handled.
    done_before = job.done
    bulk_job_resume(job_id=job.pk, actor=operator)
    job.refresh_from_db()
    assert (job.status, job.resumed_at_done) == (BulkJob.Status.QUEUED, done_before)
    bulk_job_run(job=job, chunk_size=4, pause_failure_ratio=0.2, pause_min_sample=8)
    assert (job.status, job.done, job.skipped) == (BulkJob.Status.DONE, 40, 0)
    assert DeadLetter.objects.filter(status="requeued").count() == 40 - done_before


def test_a_paused_job_can_be_cancelled_at_once(operator):
    DeadLetterFactory.create_batch(2)
    job = bulk_job_planned(actor=operator, action="requeue")
    BulkJob.objects.filter(pk=job.pk).update(status=BulkJob.Status.PAUSED, paused_reason="came back")
    bulk_job_cancel(job_id=job.pk, actor=operator)
    job.refresh_from_db()
    assert (job.status, job.finished_at is not None) == (BulkJob.Status.CANCELLED, True)
    assert DeadLetter.objects.filter(status="dead").count() == 2


@RUNS_JOBS
def test_a_requeue_of_good_messages_completes(operator, ingest_queue):
    device = DeviceFactory()
    letters = DeadLetterFactory.create_batch(24, device_id=device.pk)
    job = bulk_job_planned(actor=operator, action="requeue")

    with worker_thread(ingest_queue):
        bulk_job_run(job=job, chunk_size=4, max_per_second=8, pause_failure_ratio=0.2, pause_min_sample=8)
        assert wait_until(lambda: IngestMessage.objects.filter(status="processed").count() == 24)

    job.refresh_from_db()
    assert (job.status, job.done, job.failed_again) == (BulkJob.Status.DONE, 24, 0)
    assert set(DeadLetter.objects.filter(status="requeued")) == set(letters)


def test_audit_filters_by_who_what_which_object_and_when(operator, viewer_client):
    DeadLetterFactory.create_batch(2)
    job = bulk_job_planned(actor=operator, action="requeue")
    AuditEntry.objects.create(actor_name="ines", action="acknowledged alert", target="alert 7", detail="")
    old = AuditEntry.objects.create(actor_name="ines", action="changed device status", target="DEV-1")
    AuditEntry.objects.filter(pk=old.pk).update(at=timezone.now() - timedelta(days=3))

    def shown(query: str) -> list[str]:
        response = viewer_client.get(f"/console/audit/?{query}")
        assert response.status_code == 200
        return [line.target for line in response.context["page"].rows]

    assert shown("who=olivia") == [f"job {job.pk}"]
    assert shown("what=acknowledged") == ["alert 7"]
    assert shown(f"object=job+{job.pk}") == [f"job {job.pk}"]
    assert shown("object=job+9999999") == []
    until = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert shown(f"until={until}") == ["DEV-1"]
    assert shown(f"since={until}&who=ines") == ["alert 7"]


def test_a_bad_audit_filter_is_a_400_naming_the_field(viewer_client):
    AuditEntry.objects.create(actor_name="ines", action="acknowledged alert", target="alert 7")
    response = viewer_client.get("/console/audit/?since=yesterday")
    assert response.status_code == 400
    assert "From (since)" in response.content.decode()
    assert response.context["page"].rows == []
    response = viewer_client.get("/console/audit/?before=not-a-cursor")
    assert response.status_code == 400


def test_the_audit_trail_pages_by_keyset_over_both_tables(operator, viewer_client):
    letters = DeadLetterFactory.create_batch(30)
    for letter in letters:
        DeadLetterAction.objects.create(dead_letter=letter, action="discarded", actor_name="ines", reason="r")
    for number in range(30):
        AuditEntry.objects.create(actor_name="ines", action="acknowledged alert", target=f"alert {number}")

    first = viewer_client.get("/console/audit/").context["page"]
    second = viewer_client.get(f"/console/audit/?before={quote(first.next_cursor)}").context["page"]

    assert len(first.rows) == 50 and len(second.rows) == 10 and not second.has_next
    seen = [(line.source, line.row_id) for line in first.rows + second.rows]
    assert len(set(seen)) == 60
    assert [line.at for line in first.rows + second.rows] == sorted(
        (line.at for line in first.rows + second.rows), reverse=True
    )


def test_plans_never_confirmed_are_forgotten_a_day_after_they_expire(operator):
    from dashboard.models import BulkSelection

    DeadLetterFactory.create_batch(2)
    forgotten = bulk_plan_for(actor=operator)
    confirmed = bulk_job_planned(actor=operator)
    BulkPlan.objects.update(expires_at=timezone.now() - timedelta(days=2))

    fresh = bulk_plan_for(actor=operator)

    assert set(BulkPlan.objects.values_list("pk", flat=True)) == {confirmed.plan.pk, fresh.pk}
    assert not BulkSelection.objects.filter(pk=forgotten.selection_id).exists()
    assert BulkSelection.objects.filter(pk=confirmed.selection_id).exists()
