"""Pruning the app's bookkeeping past its retention (never the customer's records)."""

from __future__ import annotations

from datetime import datetime, timedelta

from axes.models import AccessFailureLog, AccessLog
from django.conf import settings
from django.db.models import QuerySet
from django_apscheduler.models import DjangoJobExecution

from ingest.models import DeadLetter, IngestMessage
from scheduler.models import CollectionRun

DELETE_CHUNK = 10_000


def _delete_in_chunks(queryset: QuerySet) -> int:
    """Delete a possibly huge set a chunk at a time: short transactions, no long locks."""
    deleted = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:DELETE_CHUNK])
        if not ids:
            return deleted
        deleted += queryset.model.objects.filter(pk__in=ids).delete()[0]


def housekeeping_prune(*, now: datetime) -> dict[str, int]:
    """Prune old job executions, processed ledger rows, discarded dead letters, collection
    runs and login records.

    The ledger retention must stay longer than any redelivery can take: a processed
    message pruned from the ledger would be stored again if it ever came back.
    """
    days = timedelta(days=1)
    return {
        "job_executions": _delete_in_chunks(
            DjangoJobExecution.objects.filter(
                run_time__lt=now - settings.RETENTION_JOB_EXECUTIONS_DAYS * days
            )
        ),
        "ledger": _delete_in_chunks(
            IngestMessage.objects.filter(
                status=IngestMessage.Status.PROCESSED,
                processed_at__lt=now - settings.RETENTION_LEDGER_DAYS * days,
            )
        ),
        "discarded_dead_letters": _delete_in_chunks(
            DeadLetter.objects.filter(
                status=DeadLetter.Status.DISCARDED,
                updated_at__lt=now - settings.RETENTION_DISCARDED_DEAD_LETTERS_DAYS * days,
            )
        ),
        "collection_runs": _delete_in_chunks(
            CollectionRun.objects.filter(started_at__lt=now - settings.RETENTION_COLLECTION_RUNS_DAYS * days)
        ),
        # Every login writes a row: without pruning these tables only grow. Lockouts in
        # force (AccessAttempt) are axes' own business and expire with the cool-off.
        "login_records": sum(
            _delete_in_chunks(
                model.objects.filter(attempt_time__lt=now - settings.RETENTION_LOGIN_RECORDS_DAYS * days)
            )
            for model in (AccessLog, AccessFailureLog)
        ),
    }
