"""Housekeeping prunes the app's bookkeeping past retention, and nothing else."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.utils import timezone
from django_apscheduler.models import DjangoJob, DjangoJobExecution

from ingest.models import DeadLetter, IngestMessage, SensorReading
from scheduler.models import CollectionRun, CollectionSource
from scheduler.services.housekeeping import housekeeping_prune
from tests.factories import DeadLetterFactory, DeviceFactory, SensorReadingFactory

pytestmark = pytest.mark.django_db


def _ledger(status: str, processed_days_ago: float | None) -> IngestMessage:
    processed_at = (
        timezone.now() - timedelta(days=processed_days_ago) if processed_days_ago is not None else None
    )
    return IngestMessage.objects.create(
        message_id=uuid.uuid4(),
        kind="device_batch",
        received_at=timezone.now(),
        status=status,
        processed_at=processed_at,
    )


def test_old_bookkeeping_is_pruned_and_recent_or_live_rows_are_kept(settings):
    now = timezone.now()
    old_processed, recent_processed = _ledger("processed", 40), _ledger("processed", 1)
    pending = _ledger("pending", None)
    old_discarded = DeadLetterFactory(status="discarded")
    DeadLetter.objects.filter(pk=old_discarded.pk).update(updated_at=now - timedelta(days=40))
    old_dead = DeadLetterFactory(status="dead")
    DeadLetter.objects.filter(pk=old_dead.pk).update(updated_at=now - timedelta(days=40))
    job = DjangoJob.objects.create(id="collect_sources", next_run_time=now, job_state=b"")
    DjangoJobExecution.objects.create(job=job, status="Executed", run_time=now - timedelta(days=8))
    recent_execution = DjangoJobExecution.objects.create(
        job=job, status="Executed", run_time=now - timedelta(hours=1)
    )
    source = CollectionSource.objects.create(name="s", url="http://127.0.0.1:9/", device=DeviceFactory())
    CollectionRun.objects.create(
        source=source, started_at=now - timedelta(days=20), finished_at=now, status="ok"
    )
    reading = SensorReadingFactory(measured_at=now - timedelta(days=29))
    login_record = {"username": "olivia", "ip_address": "192.0.2.1", "user_agent": "test"}
    for model in (AccessLog, AccessFailureLog):
        model.objects.create(**login_record)  # attempt_time is set on insert: move it back after
    AccessLog.objects.update(attempt_time=now - timedelta(days=91))
    AccessFailureLog.objects.update(attempt_time=now - timedelta(days=91))
    recent_login = AccessLog.objects.create(**login_record)
    lockout = AccessAttempt.objects.create(**login_record, failures_since_start=10)
    AccessAttempt.objects.filter(pk=lockout.pk).update(attempt_time=now - timedelta(days=91))

    pruned = housekeeping_prune(now=now)

    assert pruned == {
        "job_executions": 1,
        "ledger": 1,
        "discarded_dead_letters": 1,
        "collection_runs": 1,
        "login_records": 2,
    }
    assert list(AccessLog.objects.all()) == [recent_login]
    assert not AccessFailureLog.objects.exists()
    assert AccessAttempt.objects.filter(pk=lockout.pk).exists()  # a lockout is axes' to lift
    assert set(IngestMessage.objects.all()) == {recent_processed, pending}
    assert not IngestMessage.objects.filter(pk=old_processed.pk).exists()
    assert list(DeadLetter.objects.all()) == [old_dead]  # a dead letter waits for an operator, however old
    assert list(DjangoJobExecution.objects.all()) == [recent_execution]
    assert SensorReading.objects.filter(pk=reading.pk).exists()  # the customer's records are never pruned
