"""Reads for the console's overview and audit trail.

Other console reads live by subject: paging in ``dashboard.paging``, failed messages in
``ingest.selectors.dead_letters``, the broker in ``ingest.broker.monitoring``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from config.replica import read_connection
from ingest.models import Alert, AlertStatus, IngestMessage

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
    with read_connection(IngestMessage).cursor() as cursor:
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


def open_alert_count() -> int:
    return Alert.objects.filter(status=AlertStatus.OPEN).count()


def scheduler_status():
    """The scheduler's state for the overview (it reports through its heartbeat)."""
    from scheduler.selectors import scheduler_state

    return scheduler_state()
