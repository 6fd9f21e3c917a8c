"""The scheduler page and its requests (the running scheduler is tested in tests/scheduler)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_apscheduler.models import DjangoJob, DjangoJobExecution

from scheduler.models import CollectionRun, CollectionSource, SchedulerLeader, SchedulerRequest
from scheduler.selectors import scheduler_state
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db


def test_the_page_lists_jobs_runs_and_sources_with_their_last_outcome(viewer_client):
    job = DjangoJob.objects.create(id="collect_sources", next_run_time=timezone.now(), job_state=b"")
    DjangoJobExecution.objects.create(
        job=job, status=DjangoJobExecution.ERROR, run_time=timezone.now(), exception="ValueError: boom"
    )
    source = CollectionSource.objects.create(
        name="carelink",
        url="https://partner.example/feed",
        device=DeviceFactory(),
        auth_header="Authorization: Bearer top-secret",
    )
    CollectionRun.objects.create(
        source=source,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        status="failed",
        error="HTTP 500 from https://partner.example/feed",
    )
    content = viewer_client.get("/console/scheduler/").content.decode()
    assert "collect_sources" in content and "ValueError: boom" in content and "failing" in content
    assert "HTTP 500 from" in content
    assert "top-secret" not in content
    assert "Failing: collect_sources" in viewer_client.get("/console/overview/panel/").content.decode()


def test_an_operator_request_is_queued_for_the_scheduler(operator_client):
    DjangoJob.objects.create(id="raise_alerts", next_run_time=timezone.now(), job_state=b"")
    operator_client.post("/console/scheduler/jobs/raise_alerts/", {"action": "pause"})
    request = SchedulerRequest.objects.get()
    assert (request.job_id, request.action, request.requested_by.username, request.done_at) == (
        "raise_alerts",
        "pause",
        "olivia",
        None,
    )


@pytest.mark.parametrize(
    ("job_id", "action", "message"),
    [("nope", "run_now", b"no scheduled job"), ("raise_alerts", "explode", b"unknown scheduler action")],
)
def test_bad_requests_are_refused(operator_client, job_id, action, message):
    DjangoJob.objects.create(id="raise_alerts", next_run_time=timezone.now(), job_state=b"")
    response = operator_client.post(f"/console/scheduler/jobs/{job_id}/", {"action": action}, follow=True)
    assert message in response.content
    assert not SchedulerRequest.objects.exists()


def test_scheduler_state_follows_the_heartbeat():
    assert scheduler_state().state == "not running"
    now = timezone.now()
    SchedulerLeader.objects.create(pk=1, instance="host pid=1", since=now, heartbeat_at=now)
    assert scheduler_state(now=now + timedelta(seconds=5)).state == "running"
    assert scheduler_state(now=now + timedelta(minutes=5)).state == "not running"


def test_a_viewer_reading_a_source_in_the_admin_never_sees_its_credential(viewer_client):
    source = CollectionSource.objects.create(
        name="carelink",
        url="https://partner.example/feed",
        device=DeviceFactory(),
        auth_header="Authorization: Bearer top-secret",
    )
    page = viewer_client.get(f"/admin/scheduler/collectionsource/{source.pk}/change/")
    assert page.status_code == 200
    assert b"top-secret" not in page.content
    assert b"partner.example" in page.content


@pytest.mark.parametrize(
    ("action", "said"), [("pause", "pause"), ("resume", "resume"), ("run_now", "run now")]
)
def test_every_scheduler_request_is_audited(operator_client, action, said):
    from dashboard.models import AuditEntry

    DjangoJob.objects.create(id="raise_alerts", next_run_time=timezone.now(), job_state=b"")
    operator_client.post("/console/scheduler/jobs/raise_alerts/", {"action": action})
    entry = AuditEntry.objects.get()
    assert (entry.actor_name, entry.action, entry.target) == (
        "olivia",
        f"asked the scheduler to {said}",
        "scheduler job raise_alerts",
    )
    assert f"asked the scheduler to {said}" in operator_client.get("/console/audit/").content.decode()


def test_a_refused_scheduler_request_is_not_audited(operator_client):
    from dashboard.models import AuditEntry

    operator_client.post("/console/scheduler/jobs/no_such_job/", {"action": "pause"})
    assert not AuditEntry.objects.exists() and not SchedulerRequest.objects.exists()


@pytest.mark.parametrize("job_id", ["a%00b", "raise%20alerts", "%C2%B2"])
def test_a_job_id_that_is_no_job_name_is_a_404(operator_client, job_id):
    from dashboard.models import AuditEntry

    response = operator_client.post(f"/console/scheduler/jobs/{job_id}/", {"action": "pause"})
    assert response.status_code == 404
    assert not AuditEntry.objects.exists() and not SchedulerRequest.objects.exists()


def test_a_paused_job_is_a_banner_on_the_overview_saying_what_stops(viewer_client):
    DjangoJob.objects.create(id="raise_alerts", next_run_time=None, job_state=b"")  # paused
    DjangoJob.objects.create(id="collect_sources", next_run_time=timezone.now(), job_state=b"")
    DjangoJob.objects.create(
        id="housekeeping", next_run_time=None, job_state=b""
    )  # paused, no risk to residents

    content = viewer_client.get("/console/").content.decode()

    assert 'data-kind="job-paused"' in content
    assert "Scheduler job raise_alerts is paused" in content
    assert "While it is paused no offline or inactivity alerts will be raised." in content
    assert "Scheduler job housekeeping is paused" in content and "It will not run until resumed." in content
    assert "collect_sources is paused" not in content

    DjangoJob.objects.filter(id__in=["raise_alerts", "housekeeping"]).update(next_run_time=timezone.now())
    assert 'data-kind="job-paused"' not in viewer_client.get("/console/overview/panel/").content.decode()
