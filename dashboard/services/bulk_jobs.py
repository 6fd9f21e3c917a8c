"""Bulk actions on dead letters: a plan freezes the exact set, its confirmation queues a job for it.

Nothing is acted on without a plan: the operator sees how many messages, grouped by
error class, with a sample, and confirming acts on exactly those ids. A dead letter
that arrives after the plan is never part of it. A requeue pauses itself when the
messages it requeued come back as dead letters faster than the configured rate.
"""

from __future__ import annotations

import bisect
import collections
import json
import logging
import secrets
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, connections, transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import ApplicationError
from dashboard.filters import BulkChoice
from dashboard.models import BulkAction, BulkJob, BulkPlan, BulkSelection
from dashboard.services import audit_record
from ingest.models import DeadLetter
from ingest.selectors.dead_letters import dead_letter_queryset
from ingest.services.dead_letters import (
    RequeueIncomplete,
    dead_letters_discard_many,
    dead_letters_requeue_many,
    ids_array,
    reason_require,
)

logger = logging.getLogger(__name__)

# Error classes kept with a plan (largest first); the rest are summed as "other".
PLAN_ERROR_CLASSES = 12


def _short_class(error_class: str) -> str:
    return error_class.rsplit(".", 1)[-1] or error_class


def _choice_queryset(choice: BulkChoice):
    if choice.scope == BulkSelection.Scope.SELECTED:
        return DeadLetter.objects.filter(pk__in=ids_array(list(choice.ids)))
    if choice.scope == BulkSelection.Scope.GROUP:
        return DeadLetter.objects.filter(fingerprint=choice.fingerprint)
    return dead_letter_queryset(dict(choice.filters))


def _plan_description(choice: BulkChoice, error_classes: list[list]) -> str:
    """ "ValueError in group 3f2a9c1b", "DataError and 2 more error classes, matching device 7"."""
    first = _short_class(error_classes[0][0])
    classes = first if len(error_classes) == 1 else f"{first} and {len(error_classes) - 1} more error classes"
    joiner = " in " if choice.scope == BulkSelection.Scope.GROUP else ", "
    return f"{classes}{joiner}{choice.criteria}"[:255]


# Unconfirmed plans are kept this long after they expire (a refusal can still say "expired").
EXPIRED_PLANS_KEPT = timedelta(days=1)


def _expired_plans_forget() -> None:
    """Drop plans never confirmed, and their frozen ids: they can no longer become jobs."""
    stale = BulkPlan.objects.filter(job__isnull=True, expires_at__lt=timezone.now() - EXPIRED_PLANS_KEPT)
    BulkSelection.objects.filter(pk__in=stale.values("selection_id"), jobs__isnull=True).delete()


def _selection_freeze(choice: BulkChoice) -> tuple[int, int, list[list]]:
    """Store the ids of the dead letters the choice matches now, and their count by error class.

    Returns the selection's id, how many ids, and [[error class, count], ...], largest first.
    One statement, so the ids and the counts are one snapshot, and the ids go from the
    table into the array without a trip through Python (100,000 of them in well under a second).
    """
    planned = _choice_queryset(choice).filter(status=DeadLetter.Status.DEAD).values("pk", "error_class")
    planned_sql, planned_params = planned.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH planned AS MATERIALIZED ({planned_sql}),
                     by_class AS (SELECT error_class, count(*) AS messages FROM planned GROUP BY error_class)
                INSERT INTO {BulkSelection._meta.db_table}
                    (scope, criteria, dead_letter_ids, error_classes, created_at)
                SELECT %s, %s,
                       COALESCE((SELECT array_agg(pk ORDER BY pk) FROM planned), '{{}}'),
                       COALESCE(
                           (SELECT jsonb_agg(jsonb_build_array(error_class, messages)
                                             ORDER BY messages DESC, error_class) FROM by_class),
                           '[]'),
                       now()
                RETURNING id, cardinality(dead_letter_ids), error_classes""",
            [*planned_params, choice.scope, choice.criteria[:255]],
        )
        selection_id, total, error_classes = cursor.fetchone()
    # Django has the driver hand jsonb over as text (its JSONField decodes it).
    return selection_id, total, json.loads(error_classes) if isinstance(error_classes, str) else error_classes


@transaction.atomic
def bulk_plan_create(*, action: str, choice: BulkChoice, actor: AbstractBaseUser) -> BulkPlan:
    """Freeze the dead letters the choice matches now, grouped by error class, as a plan to confirm."""
    if action not in BulkAction.values:
        raise ApplicationError(f"unknown action {action!r}", code="invalid")
    _expired_plans_forget()
    selection_id, total, error_classes = _selection_freeze(choice)
    if not total:
        raise ApplicationError("no dead letters match this selection; nothing was planned", code="invalid")
    if len(error_classes) > PLAN_ERROR_CLASSES:
        BulkSelection.objects.filter(pk=selection_id).update(
            error_classes=[
                *error_classes[:PLAN_ERROR_CLASSES],
                ["other error classes", sum(count for _, count in error_classes[PLAN_ERROR_CLASSES:])],
            ]
        )
    return BulkPlan.objects.create(
        token=secrets.token_urlsafe(32),
        action=action,
        selection_id=selection_id,
        total=total,
        description=_plan_description(choice, error_classes),
        created_by=actor,
        expires_at=timezone.now() + timedelta(seconds=settings.CONSOLE_BULK_PLAN_TTL_SECONDS),
    )


def bulk_plan_get(*, token: str, actor: AbstractBaseUser) -> BulkPlan:
    """The operator's own plan by its token, not yet confirmed and not expired; else a refusal."""
    plan = (
        BulkPlan.objects.select_related("selection")
        .defer("selection__dead_letter_ids")
        .filter(token=token, created_by=actor)
        .first()
    )
    if plan is None:
        raise ApplicationError(
            "There is no such plan of yours (the link may have been changed); nothing was done.",
            code="not_found",
        )
    if plan.job_id is not None:
        raise ApplicationError(
            f"This plan was already confirmed as job {plan.job_id}; nothing more was done.", code="conflict"
        )
    if plan.expires_at <= timezone.now():
        raise ApplicationError(
            "This plan has expired; plan again to see what the action would touch now. Nothing was done.",
            code="expired",
        )
    return plan


@transaction.atomic
def bulk_plan_confirm(
    *, token: str, actor: AbstractBaseUser, reason: str = "", confirmed_count: str = ""
) -> BulkJob:
    """Queue the job for exactly the plan's ids; ``run_console_jobs`` carries it out.

    A discard must give a reason and the number of messages it discards, typed by the
    operator: no discard of many messages happens without the count confirmed.
    """
    plan = bulk_plan_get(token=token, actor=actor)
    BulkPlan.objects.select_for_update().filter(pk=plan.pk).values("pk").get()
    plan.refresh_from_db(fields=["job"])
    if plan.job_id is not None:
        raise ApplicationError(f"This plan was already confirmed as job {plan.job_id}.", code="conflict")
    if plan.action == BulkAction.DISCARD:
        reason_require(reason, to="discard messages")
        if confirmed_count.replace(",", "").strip() != str(plan.total):
            raise ApplicationError(
                f"Type the number of messages, {plan.total}, to confirm the discard; nothing was done.",
                code="invalid",
                fields={"confirmed_count": [f"Type {plan.total} to confirm."]},
            )
    job = BulkJob.objects.create(
        action=plan.action,
        selection_id=plan.selection_id,
        description=plan.description,
        reason=reason,
        created_by=actor,
        total=plan.total,
    )
    plan.job = job
    plan.save(update_fields=["job"])
    audit_record(
        actor=actor,
        action=f"bulk {job.get_action_display().lower()}",
        target=f"job {job.pk}",
        detail=f"{job.title}" + (f"; reason: {reason}" if reason else ""),
        bulk_job=job,
    )
    return job


def _job_locked(job_id: int) -> BulkJob:
    try:
        return BulkJob.objects.select_for_update().get(pk=job_id)
    except BulkJob.DoesNotExist:
        raise ApplicationError(f"no bulk job {job_id}", code="not_found") from None


def bulk_job_cancel(*, job_id: int, actor: AbstractBaseUser) -> BulkJob:
    """Ask a job to stop after its current chunk (a queued or paused job stops at once)."""
    with transaction.atomic():
        job = _job_locked(job_id)
        if not job.is_active:
            raise ApplicationError(f"job {job_id} is already {job.status}", code="conflict")
        job.cancel_requested = True
        if job.status in (BulkJob.Status.QUEUED, BulkJob.Status.PAUSED):
            job.status = BulkJob.Status.CANCELLED
            job.finished_at = timezone.now()
        job.save(update_fields=["cancel_requested", "status", "finished_at"])
        audit_record(actor=actor, action="cancelled bulk job", target=f"job {job.pk}", bulk_job=job)
    return job


def bulk_job_resume(*, job_id: int, actor: AbstractBaseUser) -> BulkJob:
    """Continue a paused job where it stopped; its failure rate is measured afresh from here."""
    with transaction.atomic():
        job = _job_locked(job_id)
        if job.status != BulkJob.Status.PAUSED:
            raise ApplicationError(f"job {job_id} is {job.status}, not paused", code="conflict")
        job.status = BulkJob.Status.QUEUED
        job.paused_reason = ""
        job.resumed_at_done = job.done
        job.resumed_at_failed_again = job.failed_again
        job.save(update_fields=["status", "paused_reason", "resumed_at_done", "resumed_at_failed_again"])
        audit_record(actor=actor, action="resumed bulk job", target=f"job {job.pk}", bulk_job=job)
    return job


RUNNER_STALE_AFTER = timedelta(minutes=2)


def _claim_next_job() -> BulkJob | None:
    """The oldest queued job, or a running one whose runner stopped beating."""
    now = timezone.now()
    with transaction.atomic():
        job = (
            BulkJob.objects.select_for_update(skip_locked=True)
            .filter(
                Q(status=BulkJob.Status.QUEUED)
                | Q(status=BulkJob.Status.RUNNING, heartbeat_at__lt=now - RUNNER_STALE_AFTER)
            )
            .order_by("created_at")
            .first()
        )
        if job is None:
            return None
        if job.status == BulkJob.Status.RUNNING:
            logger.warning(
                "bulk job %s: its runner went quiet; taking over after id %s", job.pk, job.last_dead_letter_id
            )
        job.status = BulkJob.Status.RUNNING
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        job.save(update_fields=["status", "started_at", "heartbeat_at"])
        return job


# Chunks of one job in progress at once, each in its own thread and transaction. While some
# wait for their confirms, the others lock, read or mark their rows: the broker and the
# database work at the same time, and the publisher's pipeline never runs dry. Measured
# on 2 cores shared with the broker and PostgreSQL, 100,000 dead letters: 2 lanes 17.6 s,
# 3 lanes 15.6 s, 4 lanes 14.7 s.
BULK_JOB_LANES = 4
# How often a requeue looks for its messages coming back as dead letters (one indexed query).
FAILURE_CHECK_SECONDS = 0.5


def _chunk_in_lane(act, **arguments) -> int:
    try:
        return act(**arguments)
    finally:
        connections.close_all()  # the lane's own connection: never left open in a pool thread


class _FailureWatch:
    """Counts the messages a requeue handled that are dead letters again since it started.

    A message that fails again is recorded again (same row, status ``dead``, a new
    ``last_failed_at``): one query on the (status, last_failed_at) index finds them.
    """

    def __init__(self, job: BulkJob, *, ratio: float, min_sample: int) -> None:
        self.job = job
        self.ratio = ratio
        self.min_sample = min_sample
        self.handled: set[int] = set()
        self.checked_at = 0.0

    @property
    def enabled(self) -> bool:
        return self.job.action == BulkAction.REQUEUE and self.ratio > 0

    def note_handled(self, ids: list[int]) -> None:
        if self.enabled:
            self.handled.update(ids)

    def pause_reason(self, *, force: bool = False) -> str | None:
        """Why the job should pause now, or None (looks at most every FAILURE_CHECK_SECONDS)."""
        if not self.enabled or not self.handled:
            return None
        if not force and time.monotonic() - self.checked_at < FAILURE_CHECK_SECONDS:
            return None
        self.checked_at = time.monotonic()
        job = self.job
        dead_again = DeadLetter.objects.filter(
            status=DeadLetter.Status.DEAD,
            last_failed_at__gte=job.started_at or job.created_at,
            pk__lte=job.last_dead_letter_id,
        ).values_list("pk", flat=True)
        job.failed_again = sum(1 for pk in dead_again.iterator() if pk in self.handled)
        requeued = job.done - job.resumed_at_done
        failed = job.failed_again - job.resumed_at_failed_again
        if requeued < self.min_sample or failed <= self.ratio * requeued:
            return None
        return (
            f"{failed:,} of the {requeued:,} messages this job requeued "
            f"{'since it was resumed ' if job.resumed_at_done else ''}came back as dead letters "
            f"({100 * failed / requeued:.0f}%, over the {100 * self.ratio:.0f}% limit). The job paused so that "
            "a cause still present does not fill the dead letters again: fix the cause, then Resume, or Cancel."
        )


def bulk_job_run(
    *,
    job: BulkJob,
    chunk_size: int = 500,
    max_per_second: float = 2000,
    should_stop=lambda: False,
    pause_failure_ratio: float | None = None,
    pause_min_sample: int | None = None,
) -> BulkJob:
    """Work through the job's frozen ids in order, a chunk per transaction, at a bounded rate.

    Up to ``BULK_JOB_LANES`` chunks are in progress at once; each is still one
    transaction that locks, acts on and marks its own rows (only those still dead).
    Progress (done/skipped, ``last_dead_letter_id``) is saved in id order as chunks
    finish; a cancel request is honoured between chunks. When the runner itself is asked
    to stop, the chunks in progress finish, the job goes back to ``queued`` and the next
    runner continues after ``last_dead_letter_id``. A chunk that fails ends the job as
    failed once the others in progress have finished; what they and the confirmed part
    of the failed chunk did counts. A requeue whose messages come back as dead letters
    faster than ``pause_failure_ratio`` (after ``pause_min_sample`` requeued) pauses.
    """
    ids: list[int] = BulkSelection.objects.values_list("dead_letter_ids", flat=True).get(pk=job.selection_id)
    watch = _FailureWatch(
        job,
        ratio=settings.CONSOLE_BULK_PAUSE_FAILURE_RATIO
        if pause_failure_ratio is None
        else pause_failure_ratio,
        min_sample=settings.CONSOLE_BULK_PAUSE_MIN_SAMPLE if pause_min_sample is None else pause_min_sample,
    )
    act = dead_letters_requeue_many if job.action == BulkAction.REQUEUE else dead_letters_discard_many
    reason = job.reason or f"bulk job {job.pk}"
    in_progress: collections.deque[tuple[list[int], Future]] = collections.deque()
    position = bisect.bisect_right(ids, job.last_dead_letter_id)
    watch.note_handled(ids[:position])
    handed_out = 0
    started = time.monotonic()
    ending: str | None = None  # the status once the chunks in progress are done
    with ThreadPoolExecutor(max_workers=BULK_JOB_LANES, thread_name_prefix=f"bulk-job-{job.pk}") as lanes:
        while True:
            while ending is None and len(in_progress) < BULK_JOB_LANES:
                job.refresh_from_db(fields=["cancel_requested"])
                if job.cancel_requested:
                    ending = BulkJob.Status.CANCELLED
                    break
                if should_stop():
                    ending = BulkJob.Status.QUEUED
                    break
                chunk_ids = ids[position : position + chunk_size]
                if not chunk_ids:
                    ending = BulkJob.Status.DONE
                    break
                # The bound keeps a large redrive from flooding the broker and the workers.
                pause = handed_out / max_per_second - (time.monotonic() - started)
                if pause > 0:
                    time.sleep(pause)
                in_progress.append(
                    (
                        chunk_ids,
                        lanes.submit(
                            _chunk_in_lane,
                            act,
                            dead_letter_ids=chunk_ids,
                            actor=job.created_by,
                            reason=reason,
                            bulk_job_id=job.pk,
                        ),
                    )
                )
                position += len(chunk_ids)
                handed_out += len(chunk_ids)
            if not in_progress:
                break
            chunk_ids, chunk = in_progress.popleft()
            try:
                acted = chunk.result()
            except ApplicationError as error:
                # A chunk the broker confirmed in part: the confirmed ones were marked and count.
                job.done += error.requeued if isinstance(error, RequeueIncomplete) else 0
                if job.status != BulkJob.Status.FAILED:
                    job.status, job.error = BulkJob.Status.FAILED, error.message
                ending = BulkJob.Status.FAILED
                continue
            job.done += acted
            job.skipped += len(chunk_ids) - acted
            if ending != BulkJob.Status.FAILED:
                job.last_dead_letter_id = chunk_ids[-1]
                watch.note_handled(chunk_ids)
            job.heartbeat_at = timezone.now()
            if ending is None and (why := watch.pause_reason()) is not None:
                ending, job.paused_reason = BulkJob.Status.PAUSED, why
            job.save(update_fields=["done", "skipped", "last_dead_letter_id", "heartbeat_at", "failed_again"])
    if ending == BulkJob.Status.DONE:
        pause = handed_out / max_per_second - (time.monotonic() - started)
        if pause > 0:
            time.sleep(pause)
        watch.pause_reason(force=True)  # the final count of those that came back, for the page
    if ending == BulkJob.Status.QUEUED:
        job.status = BulkJob.Status.QUEUED
        job.save(update_fields=["status", "done", "skipped", "last_dead_letter_id"])
        return job
    if ending == BulkJob.Status.PAUSED:
        job.status = BulkJob.Status.PAUSED
        job.save(update_fields=["status", "paused_reason", "done", "skipped", "last_dead_letter_id"])
        logger.warning("bulk job %s paused: %s", job.pk, job.paused_reason)
        return job
    job.status = ending
    job.finished_at = timezone.now()
    job.save(
        update_fields=[
            "status",
            "finished_at",
            "error",
            "done",
            "skipped",
            "last_dead_letter_id",
            "failed_again",
        ]
    )
    logger.info("bulk job %s %s: %d done, %d skipped", job.pk, job.status, job.done, job.skipped)
    return job


def bulk_jobs_run_pending(
    *, chunk_size: int = 500, max_per_second: float = 2000, should_stop=lambda: False
) -> int:
    """Run every queued job, oldest first, until none is left or ``should_stop()``."""
    ran = 0
    while not should_stop() and (job := _claim_next_job()) is not None:
        bulk_job_run(job=job, chunk_size=chunk_size, max_per_second=max_per_second, should_stop=should_stop)
        ran += 1
    return ran
