"""Reads for the console. Lists never count a whole table: they page by keyset."""

from __future__ import annotations

import codecs
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ingest.broker.monitoring import QueueDepth
from ingest.json_input import JsonInputError, json_parse
from ingest.messages import FailureEnvelope
from ingest.models import (
    Alert,
    AlertStatus,
    DeadLetter,
    DeadLetterRecorder,
    Device,
    IngestMessage,
    SensorReading,
)

logger = logging.getLogger(__name__)
PAGE_SIZE = 50


# --- keyset pages ---------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    rows: list
    next_cursor: str | None

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None


def keyset_page(
    queryset: QuerySet, *, cursor: str | None, time_field: str | None = None, size: int = PAGE_SIZE
) -> Page:
    """Newest first; the next page starts after the last row shown. Never a COUNT(*).

    Ordered by primary key, or by ``time_field`` then key when the table has an index that
    serves it (e.g. readings by ``measured_at``, which filtered lists also use).
    The cursor is ``<id>`` or ``<iso time>|<id>``.
    """
    if time_field:
        queryset = queryset.order_by(f"-{time_field}", "-pk")
        at, _, last_id = (cursor or "").rpartition("|")
        instant = parse_instant(at)
        if instant is not None and last_id.isdigit():
            # (time, id) < (at, last_id), written so that the time index bounds the scan.
            queryset = queryset.filter(**{f"{time_field}__lte": instant}).exclude(
                **{time_field: instant, "pk__gte": int(last_id)}
            )
    else:
        queryset = queryset.order_by("-pk")
        if (last_id := int_or_none(cursor)) is not None:
            queryset = queryset.filter(pk__lt=last_id)
    rows = list(queryset[: size + 1])
    if len(rows) <= size:
        return Page(rows, None)
    last = rows[size - 1]
    next_cursor = f"{getattr(last, time_field).isoformat()}|{last.pk}" if time_field else str(last.pk)
    return Page(rows[:size], next_cursor)


def estimated_row_count(model) -> int:
    """PostgreSQL's own estimate (pg_class.reltuples): instant on any table size."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table]
        )
        row = cursor.fetchone()
    return max(0, row[0]) if row else 0


def parse_instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        instant = parse_datetime(value)
    except ValueError:  # well-formed but not a real time (a cursor is validated before)
        return None
    if instant is None:
        return None
    return timezone.make_aware(instant) if timezone.is_naive(instant) else instant


def int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


# --- dead letters ---------------------------------------------------------------------


def dead_letter_queryset(filters: dict) -> QuerySet:
    """Dead letters matching the workbench's filters (also what a bulk job acts on).

    ``filters`` are parsed values from ``dashboard.filters.DeadLetterFilterForm``.
    """
    queryset = DeadLetter.objects.all()
    if filters.get("status"):
        queryset = queryset.filter(status=filters["status"])
    if filters.get("error_class"):
        queryset = queryset.filter(error_class__icontains=filters["error_class"])
    device = filters.get("device")
    if isinstance(device, int):
        queryset = queryset.filter(device_id=device)
    elif device:
        queryset = queryset.filter(device_id__in=Device.objects.filter(serial_no=device).values("pk"))
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


def dead_letter_failure_times(dead_letter: DeadLetter) -> list[str]:
    return [instant.isoformat() for instant in FailureEnvelope.from_headers(dead_letter.headers).failures]


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


# --- overview -------------------------------------------------------------------------


@dataclass(frozen=True)
class RatePoint:
    at: datetime
    messages: int
    records: int


def ingest_rate_series(*, window: timedelta, bucket_minutes: int) -> list[RatePoint]:
    """Processed messages and records per minute, averaged over buckets, oldest first."""
    now = timezone.now()
    start = now - window
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT to_timestamp(floor(extract(epoch FROM processed_at) / %s) * %s) AS bucket,
                   count(*), coalesce(sum(readings + events), 0)
            FROM {IngestMessage._meta.db_table}
            WHERE processed_at >= %s
            GROUP BY 1
            """,
            [bucket_minutes * 60, bucket_minutes * 60, start],
        )
        counted = {bucket: (messages, records) for bucket, messages, records in cursor.fetchall()}
    points = []
    bucket = datetime.fromtimestamp(
        (int(start.timestamp()) // (bucket_minutes * 60) + 1) * bucket_minutes * 60, tz=start.tzinfo
    )
    while bucket <= now:
        messages, records = counted.get(bucket, (0, 0))
        points.append(RatePoint(bucket, round(messages / bucket_minutes), round(records / bucket_minutes)))
        bucket += timedelta(minutes=bucket_minutes)
    return points


def dead_letter_queue_waiting(queues: list[QueueDepth] | None) -> int | None:
    """Messages on the dead-letter queue not yet recorded: ready plus unacked (when known)."""
    dead = next((queue for queue in queues or [] if queue.role == "dead letters"), None)
    if dead is None or dead.ready is None:
        return None
    return dead.ready + (dead.unacked or 0)


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


def open_alert_count() -> int:
    return Alert.objects.filter(status=AlertStatus.OPEN).count()


def scheduler_status():
    """The scheduler's state for the overview (it reports through its heartbeat)."""
    from scheduler.selectors import scheduler_state

    return scheduler_state()


@dataclass(frozen=True)
class AuditLine:
    at: datetime
    actor: str
    action: str
    target: str
    detail: str
    link: str | None


def audit_trail(*, limit: int = 200) -> list[AuditLine]:
    """The newest console actions: dead-letter actions by people, and everything else."""
    from dashboard.models import AuditEntry
    from ingest.models import DeadLetterAction

    lines = [
        AuditLine(entry.at, entry.actor_name, entry.action, entry.target, entry.detail, None)
        for entry in AuditEntry.objects.all()[:limit]
    ]
    people = DeadLetterAction.objects.exclude(action=DeadLetterAction.Action.RECORDED).select_related(
        "dead_letter"
    )
    lines += [
        AuditLine(
            action.at,
            action.actor_name or "system",
            action.get_action_display().lower(),
            f"message {action.dead_letter.message_id}",
            action.reason,
            f"/console/failed/{action.dead_letter_id}/",
        )
        for action in people.order_by("-at")[:limit]
    ]
    return sorted(lines, key=lambda line: line.at, reverse=True)[:limit]


# --- readings on a large table ----------------------------------------------------------

MAX_SERIES_PER_PAGE = 400


def _device_metrics(device_id: int) -> list[str]:
    """The metrics a device has readings of: a skip scan of uq_sensor_readings_point."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH RECURSIVE found(metric) AS (
                (SELECT metric FROM sensor_readings WHERE device_id = %s ORDER BY metric LIMIT 1)
                UNION ALL
                SELECT (SELECT metric FROM sensor_readings WHERE device_id = %s AND metric > found.metric
                        ORDER BY metric LIMIT 1)
                FROM found WHERE found.metric IS NOT NULL
            )
            SELECT metric FROM found WHERE metric IS NOT NULL
            """,
            [device_id, device_id],
        )
        return [row[0] for row in cursor.fetchall()]


def readings_page(
    *,
    device_ids: list[int],
    metric: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    size: int = PAGE_SIZE,
) -> Page:
    """Newest readings of some devices, through the customer's unique index only.

    The schema has no (device, time) index. Ordering a device's readings by time through
    ``ix_sensor_readings_measured`` is fast for a busy device but scans the whole table
    for a quiet one. Instead each (device, metric) series is read newest-first from
    ``uq_sensor_readings_point`` (a bounded index scan each) and the series are merged.
    """
    series = [
        (device_id, name)
        for device_id in device_ids
        for name in ([metric] if metric else _device_metrics(device_id))
    ]
    if not series:
        return Page([], None)
    if len(series) > MAX_SERIES_PER_PAGE:
        many = SensorReading.objects.filter(
            device_id__in=device_ids, **({"metric": metric} if metric else {})
        )
        if since:
            many = many.filter(measured_at__gte=since)
        if until:
            many = many.filter(measured_at__lt=until)
        return keyset_page(many, cursor=cursor, time_field="measured_at", size=size)
    at, _, last_id = (cursor or "").rpartition("|")
    after = parse_instant(at) if last_id.isdigit() else None
    bounds, params = [], []
    if since:
        bounds.append("s.measured_at >= %s")
        params.append(since)
    if until:
        bounds.append("s.measured_at < %s")
        params.append(until)
    if after:
        bounds.append("(s.measured_at, s.id) < (%s, %s)")
        params += [after, int(last_id)]
    where = "".join(f" AND {bound}" for bound in bounds)
    with connection.cursor() as cursor_:
        cursor_.execute(
            f"""
            SELECT page.id FROM unnest(%s::bigint[], %s::varchar[]) AS series(device_id, metric)
            CROSS JOIN LATERAL (
                SELECT s.id, s.measured_at FROM sensor_readings s
                WHERE s.device_id = series.device_id AND s.metric = series.metric{where}
                ORDER BY s.device_id DESC, s.metric DESC, s.measured_at DESC
                LIMIT %s
            ) AS page
            ORDER BY page.measured_at DESC, page.id DESC
            LIMIT %s
            """,
            [[d for d, _ in series], [m for _, m in series], *params, size + 1, size + 1],
        )
        ids = [row[0] for row in cursor_.fetchall()]
    rows = sorted(
        SensorReading.objects.select_related("device").filter(pk__in=ids),
        key=lambda reading: (reading.measured_at, reading.pk),
        reverse=True,
    )
    if len(rows) <= size:
        return Page(rows, None)
    last = rows[size - 1]
    return Page(rows[:size], f"{last.measured_at.isoformat()}|{last.pk}")
