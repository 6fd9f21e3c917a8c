"""Console actions: audit, devices and bulk jobs over dead letters (alerts: ``alerts``)."""

from __future__ import annotations

import collections
import getpass
import logging
import os
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import ApplicationError
from dashboard.filters import DeadLetterFilterForm
from dashboard.models import AuditEntry, BulkJob
from dashboard.selectors import dead_letter_queryset
from ingest.models import DeadLetter, Device, DeviceStatus
from ingest.services.dead_letters import (
    RequeueIncomplete,
    dead_letters_discard_many,
    dead_letters_requeue_many,
    reason_require,
)
from ingest.services.devices import device_key_issue, device_keys_revoke

logger = logging.getLogger(__name__)


def audit_record(
    *, actor: AbstractBaseUser | None, action: str, target: str, detail: str = "", actor_name: str = ""
) -> AuditEntry:
    """Record an action; ``actor`` is the console user, or None with ``actor_name`` for a command."""
    return AuditEntry.objects.create(
        actor=actor,
        actor_name=actor_name or actor.get_username(),
        action=action,
        target=target,
        detail=detail,
    )


def command_line_actor_name() -> str:
    """Who ran a management command: the operating-system user (and who became it with sudo)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # a container's uid with no passwd entry
        user = f"uid {os.getuid()}"
    if (sudo_user := os.environ.get("SUDO_USER")) and sudo_user != user:
        user = f"{sudo_user} as {user}"
    return f"{user} (command line on {socket.gethostname()})"[:150]


@transaction.atomic
def device_status_change(*, device_id: int, status: str, actor: AbstractBaseUser) -> Device:
    if status not in DeviceStatus.values:
        raise ApplicationError(f"unknown device status {status!r}", code="invalid")
    device = Device.objects.select_for_update().get(pk=device_id)
    previous, device.status = device.status, status
    device.save(update_fields=["status"])
    audit_record(
        actor=actor, action="changed device status", target=device.serial_no, detail=f"{previous} → {status}"
    )
    return device


@transaction.atomic
def device_key_issue_audited(
    *, device: Device, name: str, actor: AbstractBaseUser | None, actor_name: str = ""
) -> str:
    """Issue a key (console or command line); the plain key is returned once and never logged."""
    api_key, key = device_key_issue(device=device, name=name)
    audit_record(
        actor=actor,
        actor_name=actor_name,
        action="issued device key",
        target=device.serial_no,
        detail=f"prefix {api_key.prefix}",
    )
    return key


@transaction.atomic
def device_keys_revoke_audited(
    *, device: Device, actor: AbstractBaseUser | None, actor_name: str = ""
) -> int:
    revoked = device_keys_revoke(device=device)
    audit_record(
        actor=actor,
        actor_name=actor_name,
        action="revoked device keys",
        target=device.serial_no,
        detail=f"{revoked} key(s)",
    )
    return revoked


def _selection_queryset(selection: dict):
    if "ids" in selection:
        return DeadLetter.objects.filter(pk__in=selection["ids"])
    if "fingerprint" in selection:
        return DeadLetter.objects.filter(fingerprint=selection["fingerprint"])
    # The filter is stored as the operator wrote it and parsed by the list's own form.
    return dead_letter_queryset(DeadLetterFilterForm(selection.get("filter", {})).filters_or_refuse())


@transaction.atomic
def bulk_job_create(
    *, action: str, selection: dict, description: str, reason: str, actor: AbstractBaseUser
) -> BulkJob:
    """Queue a bulk requeue or discard; ``run_console_jobs`` carries it out."""
    if action not in BulkJob.Action.values:
        raise ApplicationError(f"unknown action {action!r}", code="invalid")
    if action == BulkJob.Action.DISCARD:
        reason_require(reason, to="discard messages")
    total = _selection_queryset(selection).filter(status=DeadLetter.Status.DEAD).count()
    if total == 0:
        raise ApplicationError("no dead letters match this selection", code="invalid")
    job = BulkJob.objects.create(
        action=action,
        selection=selection,
        description=description[:255],
        reason=reason,
        created_by=actor,
        total=total,
    )
    audit_record(
        actor=actor,
        action=f"created bulk {job.get_action_display().lower()} job",
        target=f"job {job.pk}",
        detail=f"{job.description}: {total} message(s)" + (f"; reason: {reason}" if reason else ""),
    )
    return job


def bulk_job_cancel(*, job_id: int, actor: AbstractBaseUser) -> BulkJob:
    """Ask a job to stop after its current chunk (a queued job stops at once)."""
    with transaction.atomic():
        job = BulkJob.objects.select_for_update().get(pk=job_id)
        if not job.is_active:
            raise ApplicationError(f"job {job_id} is already {job.status}", code="conflict")
        job.cancel_requested = True
        if job.status == BulkJob.Status.QUEUED:
            job.status = BulkJob.Status.CANCELLED
            job.finished_at = timezone.now()
        job.save()
        audit_record(actor=actor, action="cancelled bulk job", target=f"job {job.pk}")
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


def _chunk_in_lane(act, **arguments) -> int:
    try:
        return act(**arguments)
    finally:
        connections.close_all()  # the lane's own connection: never left open in a pool thread


def bulk_job_run(
    *, job: BulkJob, chunk_size: int = 500, max_per_second: float = 2000, should_stop=lambda: False
) -> BulkJob:
    """Work through the job's selection in id order, a chunk per transaction, at a bounded rate.

    Up to ``BULK_JOB_LANES`` chunks are in progress at once; each is still one
    transaction that locks, acts on and marks its own rows. Progress (done/skipped,
    ``last_dead_letter_id``) is saved in id order as chunks finish; a cancel request is
    honoured between chunks. When the runner itself is asked to stop, the chunks in
    progress finish, the job goes back to ``queued`` and the next runner continues after
    ``last_dead_letter_id``. A chunk that fails ends the job as failed once the others in
    progress have finished; what they and the confirmed part of the failed chunk did counts.
    """
    try:
        selection = _selection_queryset(job.selection)
    except ApplicationError as error:
        job.status, job.error, job.finished_at = BulkJob.Status.FAILED, error.message, timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        return job
    act = dead_letters_requeue_many if job.action == BulkJob.Action.REQUEUE else dead_letters_discard_many
    reason = job.reason or f"bulk job {job.pk}"
    in_progress: collections.deque[tuple[list[int], Future]] = collections.deque()
    next_after = job.last_dead_letter_id
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
                ids = list(
                    selection.filter(pk__gt=next_after, status=DeadLetter.Status.DEAD)
                    .order_by("pk")
                    .values_list("pk", flat=True)[:chunk_size]
                )
                if not ids:
                    ending = BulkJob.Status.DONE
                    break
                # The bound keeps a large redrive from flooding the broker and the workers.
                pause = handed_out / max_per_second - (time.monotonic() - started)
                if pause > 0:
                    time.sleep(pause)
                in_progress.append(
                    (
                        ids,
                        lanes.submit(
                            _chunk_in_lane, act, dead_letter_ids=ids, actor=job.created_by, reason=reason
                        ),
                    )
                )
                next_after = ids[-1]
                handed_out += len(ids)
            if not in_progress:
                break
            ids, chunk = in_progress.popleft()
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
            job.skipped += len(ids) - acted
            if ending != BulkJob.Status.FAILED:
                job.last_dead_letter_id = ids[-1]
            job.heartbeat_at = timezone.now()
            job.save(update_fields=["done", "skipped", "last_dead_letter_id", "heartbeat_at"])
    if ending == BulkJob.Status.DONE:
        pause = handed_out / max_per_second - (time.monotonic() - started)
        if pause > 0:
            time.sleep(pause)
    if ending == BulkJob.Status.QUEUED:
        job.status = BulkJob.Status.QUEUED
        job.save(update_fields=["status", "done", "skipped", "last_dead_letter_id"])
        return job
    job.status = ending
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "finished_at", "error", "done", "skipped", "last_dead_letter_id"])
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
