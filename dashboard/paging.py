"""Keyset pages for the console's lists: newest first, never a COUNT(*) of the table.

The page cursor is part of the filter vocabulary (``dashboard.filters.Cursor``): the
pager writes it, the list's form reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from config.replica import read_connection
from dashboard.filters import Cursor
from ingest.models import SensorReading

PAGE_SIZE = 50


@dataclass(frozen=True)
class Page:
    rows: list
    next_cursor: str | None  # Cursor.to_text(), for the "older" link

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None


def keyset_page(
    queryset: QuerySet, *, cursor: Cursor | None, time_field: str | None = None, size: int = PAGE_SIZE
) -> Page:
    """Newest first; the next page starts after the last row shown. Never a COUNT(*).

    Ordered by primary key, or by ``time_field`` then key when the table has an index that
    serves it (e.g. readings by ``measured_at``, which filtered lists also use). A cursor
    without a time on a time-ordered list (or with one on an id-ordered list) is not one
    this list wrote: the list starts from the top.
    """
    if time_field:
        queryset = queryset.order_by(f"-{time_field}", "-pk")
        if cursor is not None and cursor.at is not None:
            # (time, id) < (at, last_id), written so that the time index bounds the scan.
            queryset = queryset.filter(**{f"{time_field}__lte": cursor.at}).exclude(
                **{time_field: cursor.at, "pk__gte": cursor.last_id}
            )
    else:
        queryset = queryset.order_by("-pk")
        if cursor is not None and cursor.at is None:
            queryset = queryset.filter(pk__lt=cursor.last_id)
    rows = list(queryset[: size + 1])
    if len(rows) <= size:
        return Page(rows, None)
    last = rows[size - 1]
    next_cursor = Cursor(last.pk, getattr(last, time_field) if time_field else None)
    return Page(rows[:size], next_cursor.to_text())


def estimated_row_count(model) -> int:
    """PostgreSQL's own estimate (pg_class.reltuples): instant on any table size."""
    with read_connection(model).cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table]
        )
        row = cursor.fetchone()
    return max(0, row[0]) if row else 0


# --- readings on a large table ----------------------------------------------------------

MAX_SERIES_PER_PAGE = 400


def device_metrics(device_id: int) -> list[str]:
    """The metrics a device has readings of: a skip scan of uq_sensor_readings_point."""
    with read_connection(SensorReading).cursor() as cursor:
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
    cursor: Cursor | None,
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
        for name in ([metric] if metric else device_metrics(device_id))
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
    bounds, params = [], []
    if since:
        bounds.append("s.measured_at >= %s")
        params.append(since)
    if until:
        bounds.append("s.measured_at < %s")
        params.append(until)
    if cursor is not None and cursor.at is not None:
        bounds.append("(s.measured_at, s.id) < (%s, %s)")
        params += [cursor.at, cursor.last_id]
    where = "".join(f" AND {bound}" for bound in bounds)
    with read_connection(SensorReading).cursor() as database:
        database.execute(
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
        ids = [row[0] for row in database.fetchall()]
    return page_of_ids(
        SensorReading.objects.select_related("device"), ids, time_field="measured_at", size=size
    )


def page_of_ids(queryset: QuerySet, ids: list[int], *, time_field: str, size: int) -> Page:
    """The rows of ``ids`` (at most ``size`` + 1, newest first by ``time_field``) as a page.

    For pages whose ids were found by a merge of per-series index scans: the rows are
    loaded by key and ordered here, and one more than the page says whether another follows.
    """
    rows = sorted(
        queryset.filter(pk__in=ids),
        key=lambda row: (getattr(row, time_field), row.pk),
        reverse=True,
    )
    if len(rows) <= size:
        return Page(rows, None)
    last = rows[size - 1]
    return Page(rows[:size], Cursor(last.pk, getattr(last, time_field)).to_text())
