"""Reads of failed messages (dead letters): the workbench's lists, groups and detail.

The writes (recording, requeue, discard) are ``ingest.services.dead_letters``.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone

from ingest.broker.monitoring import QueueDepth, dead_letter_queue_waiting
from ingest.json_input import JsonInputError, json_parse
from ingest.messages import FailureEnvelope
from ingest.models import DeadLetter, DeadLetterRecorder, IngestMessage
from ingest.selectors.references import DEVICE_REFERENCE


def dead_letter_queryset(filters: dict) -> QuerySet:
    """Dead letters matching the workbench's filters (also what a bulk job acts on).

    ``filters`` are parsed values from ``dashboard.filters.DeadLetterFilterForm``.
    """
    queryset = DeadLetter.objects.all()
    if filters.get("status"):
        queryset = queryset.filter(status=filters["status"])
    if filters.get("error_class"):
        queryset = queryset.filter(error_class__icontains=filters["error_class"])
    if filters.get("device") is not None:
        queryset = queryset.filter(DEVICE_REFERENCE.q(filters["device"], path="device"))
    if filters.get("queue"):
        queryset = queryset.filter(original_queue=filters["queue"])
    if filters.get("since"):
        queryset = queryset.filter(last_failed_at__gte=filters["since"])
    if filters.get("until"):
        queryset = queryset.filter(last_failed_at__lt=filters["until"])
    if filters.get("fingerprint"):
        queryset = queryset.filter(fingerprint=filters["fingerprint"])
    if filters.get("q"):
        text = filters["q"]
        queryset = queryset.filter(
            Q(body_text__icontains=text) | Q(error_message__icontains=text) | Q(message_id__icontains=text)
        )
    return queryset


@dataclass(frozen=True)
class FailureGroup:
    fingerprint: str
    error_class: str
    sample_message: str
    count: int
    first_failed_at: datetime
    last_failed_at: datetime
    trend: tuple[int, ...] = ()  # failures per trend bucket (by last_failed_at), oldest first


def dead_letter_groups(
    *, status: str = DeadLetter.Status.DEAD, limit: int = 200, trend_starts: Sequence[datetime] = ()
) -> list[FailureGroup]:
    """Failures sharing a cause (error class + normalised message), biggest first.

    With ``trend_starts`` (bucket starts, oldest first) each group also counts its
    failures per bucket, in the same pass over the dead letters: a second query would
    read them all again.
    """
    queryset = DeadLetter.objects.all()
    if status:
        queryset = queryset.filter(status=status)
    failed_since = {
        f"failed_since_{index}": Count("id", filter=Q(last_failed_at__gte=start))
        for index, start in enumerate(trend_starts)
    }
    rows = (
        queryset.values("fingerprint")
        .annotate(
            count=Count("id"),
            first=Min("first_failed_at"),
            last=Max("last_failed_at"),
            sample_id=Max("id"),
            **failed_since,
        )
        .order_by("-count", "-last")[:limit]
    )
    rows = list(rows)
    samples = DeadLetter.objects.in_bulk([row["sample_id"] for row in rows])
    return [
        FailureGroup(
            fingerprint=row["fingerprint"],
            error_class=samples[row["sample_id"]].error_class,
            sample_message=samples[row["sample_id"]].error_message,
            count=row["count"],
            first_failed_at=row["first"],
            last_failed_at=row["last"],
            trend=_per_bucket([row[name] for name in failed_since]),
        )
        for row in rows
    ]


def _per_bucket(failed_since: list[int]) -> tuple[int, ...]:
    """Counts since each bucket's start -> counts within each bucket."""
    return tuple(
        count - (failed_since[index + 1] if index + 1 < len(failed_since) else 0)
        for index, count in enumerate(failed_since)
    )


def dead_letter_failure_times(dead_letter: DeadLetter) -> list[datetime]:
    return list(FailureEnvelope.from_headers(dead_letter.headers).failures)


@dataclass(frozen=True)
class BodyView:
    """A dead letter's body for reading: text only where it is text."""

    text: str  # pretty JSON, the text as sent, or for a binary body its escaped form
    is_binary: bool
    size: int
    hex: str  # binary bodies only: the first BODY_HEX_MAX_BYTES as hex


BODY_HEX_MAX_BYTES = 4096


def dead_letter_body_view(dead_letter: DeadLetter) -> BodyView:
    body = bytes(dead_letter.body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        escaped = codecs.escape_encode(body)[0].decode("ascii")
        return BodyView(escaped, True, len(body), body[:BODY_HEX_MAX_BYTES].hex(" "))
    try:
        text = json.dumps(json_parse(text), indent=2, sort_keys=True)
    except JsonInputError:
        pass  # not JSON (or nested deeper than the API accepts): shown as sent
    return BodyView(text, False, len(body), "")


def ingest_message_of(dead_letter: DeadLetter) -> IngestMessage | None:
    return IngestMessage.objects.filter(message_id=dead_letter.message_id).first()


def dead_letter_recording_stall(queues: list[QueueDepth] | None) -> str | None:
    """Why dead letters are not being recorded, or None while they are (or none wait).

    A recorder that checks in but has held letters without catching up for
    ``DEAD_LETTER_RECORDING_STALL_SECONDS`` is stuck (it says why). Letters waiting on the
    queue while no recorder caught up in that time are recorded by nobody.
    """
    window = settings.DEAD_LETTER_RECORDING_STALL_SECONDS
    since = timezone.now() - timedelta(seconds=window)
    recorders = list(DeadLetterRecorder.objects.filter(checked_in_at__gte=since).order_by("name"))
    for recorder in recorders:
        if recorder.holding and (recorder.caught_up_at is None or recorder.caught_up_at < since):
            reason = f": {recorder.last_error}" if recorder.last_error else ""
            return (
                f"worker {recorder.name} holds {recorder.holding} dead letters it has not been able"
                f" to record for over {window:g} s{reason}"
            )
    waiting = dead_letter_queue_waiting(queues)
    if waiting and not any(
        recorder.caught_up_at and recorder.caught_up_at >= since for recorder in recorders
    ):
        return f"{waiting} dead letters wait on the queue and no worker has recorded any in the last {window:g} s"
    return None


def dead_letter_counts_by_status() -> dict[str, int]:
    counts = dict(DeadLetter.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    return {status: counts.get(status, 0) for status in DeadLetter.Status.values}
