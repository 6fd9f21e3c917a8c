"""Leadership heartbeat and console requests to the running scheduler."""

from __future__ import annotations

import logging

from apscheduler.jobstores.base import JobLookupError
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError
from scheduler.models import SchedulerLeader, SchedulerRequest

logger = logging.getLogger(__name__)


def leader_heartbeat(*, instance: str) -> None:
    now = timezone.now()
    leader, created = SchedulerLeader.objects.get_or_create(
        pk=1, defaults={"instance": instance, "since": now, "heartbeat_at": now}
    )
    if not created:
        if leader.instance != instance:
            leader.instance, leader.since = instance, now
        leader.heartbeat_at = now
        leader.save()


@transaction.atomic
def scheduler_request_create(*, job_id: str, action: str, actor: AbstractBaseUser) -> SchedulerRequest:
    """Ask the leading scheduler to run a job now, pause or resume it (audited: pausing
    ``raise_alerts`` silently stops every offline alert, so who did it must be on record)."""
    from django_apscheduler.models import DjangoJob

    from dashboard.services import audit_record

    if action not in SchedulerRequest.Action.values:
        raise ApplicationError(f"unknown scheduler action {action!r}", code="invalid")
    if not DjangoJob.objects.filter(id=job_id).exists():
        raise ApplicationError(f"no scheduled job {job_id!r}", code="not_found")
    scheduler_request = SchedulerRequest.objects.create(job_id=job_id, action=action, requested_by=actor)
    audit_record(
        actor=actor,
        action=f"asked the scheduler to {scheduler_request.get_action_display().lower()}",
        target=f"scheduler job {job_id}",
    )
    return scheduler_request


def scheduler_requests_apply(*, scheduler) -> int:
    """Carry out pending console requests on the running scheduler; return how many.

    Requests are claimed in a short transaction, then applied outside it: the job store
    writes the new run time in autocommit, so the scheduler's loop, woken by the change,
    reads the committed value (inside a transaction it would read the old one and sleep on).
    """
    with transaction.atomic():
        pending = list(
            SchedulerRequest.objects.select_for_update(skip_locked=True).filter(done_at__isnull=True)
        )
        SchedulerRequest.objects.filter(pk__in=[request.pk for request in pending]).update(
            done_at=timezone.now(), outcome="applying"
        )
    for request in pending:
        try:
            if request.action == SchedulerRequest.Action.RUN_NOW:
                scheduler.modify_job(request.job_id, next_run_time=timezone.now())
                request.outcome = "started"
            elif request.action == SchedulerRequest.Action.PAUSE:
                scheduler.pause_job(request.job_id)
                request.outcome = "paused"
            else:
                scheduler.resume_job(request.job_id)
                request.outcome = "resumed"
        except JobLookupError:
            request.outcome = "no such job"
        request.save(update_fields=["outcome"])
        logger.info("scheduler request %s %s: %s", request.action, request.job_id, request.outcome)
    return len(pending)
