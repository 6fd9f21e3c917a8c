"""Time series for the console's charts: readings downsampled in SQL, failure-group trends.

Charts never fetch raw rows. Readings are folded into at most ``MAX_BUCKETS`` time
buckets by PostgreSQL (``date_bin``, with min, max and average per bucket), reading one
(device, metric) range of ``uq_sensor_readings_point`` per device: the cost follows the
readings in the window, not the size of the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from config.replica import read_connection
from ingest.models import SensorReading

MAX_BUCKETS = 500
# Bucket widths that make readable ticks and tooltips ("every 5 min", "every 2 h").
BUCKET_STEPS_SECONDS = (
    1, 2, 5, 10, 15, 30,
    60, 2 * 60, 5 * 60, 10 * 60, 15 * 60, 30 * 60,
    3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600,
    86400, 2 * 86400, 7 * 86400,
)  # fmt: skip
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def bucket_seconds_for(span: timedelta, *, max_buckets: int = MAX_BUCKETS) -> int:
    """The narrowest readable bucket that cuts ``span`` into at most ``max_buckets``."""
    needed = span.total_seconds() / max_buckets
    for step in BUCKET_STEPS_SECONDS:
        if step >= needed:
            return step
    return math.ceil(needed / 86400) * 86400


def bucket_starts(since: datetime, until: datetime, bucket_seconds: int) -> list[int]:
    """Epoch seconds of every bucket touching [since, until), aligned as date_bin aligns them."""
    first = int(since.timestamp()) // bucket_seconds * bucket_seconds
    return list(range(first, math.ceil(until.timestamp()), bucket_seconds))


def series_metrics(device_ids: list[int]) -> dict[str, list[int]]:
    """Each metric the devices have readings of, with the devices that have it.

    One skip scan of ``uq_sensor_readings_point`` per device (one index probe per metric),
    in one statement: fast however many readings each metric has.
    """
    if not device_ids:
        return {}
    with read_connection(SensorReading).cursor() as cursor:
        cursor.execute(
            """
            WITH RECURSIVE found(device_id, metric) AS (
                SELECT device.id, (SELECT metric FROM sensor_readings
                                   WHERE device_id = device.id ORDER BY metric LIMIT 1)
                FROM unnest(%s::bigint[]) AS device(id)
                UNION ALL
                SELECT found.device_id, (SELECT metric FROM sensor_readings
                                         WHERE device_id = found.device_id AND metric > found.metric
                                         ORDER BY metric LIMIT 1)
                FROM found WHERE found.metric IS NOT NULL
            )
            SELECT metric, device_id FROM found WHERE metric IS NOT NULL ORDER BY metric, device_id
            """,
            [list(device_ids)],
        )
        metrics: dict[str, list[int]] = {}
        for metric, device_id in cursor.fetchall():
            metrics.setdefault(metric, []).append(device_id)
        return metrics


@dataclass(frozen=True)
class DeviceSeries:
    """One device's readings of a metric, bucket by bucket (None where it sent nothing)."""

    device_id: int
    serial_no: str
    minimum: list[float | None]
    maximum: list[float | None]
    average: list[float | None]
    readings: int
    low: float | None
    high: float | None
    mean: float | None


@dataclass(frozen=True)
class ReadingChart:
    metric: str
    unit: str
    since: datetime
    until: datetime
    bucket_seconds: int
    times: list[int]  # epoch seconds, the start of each bucket
    series: list[DeviceSeries]

    @property
    def readings(self) -> int:
        return sum(one.readings for one in self.series)


class _Buckets:
    """One device's bucket columns while the query's rows are placed on the time axis."""

    def __init__(self, size: int):
        self.minimum: list[float | None] = [None] * size
        self.maximum: list[float | None] = [None] * size
        self.average: list[float | None] = [None] * size
        self.counts = [0] * size
        self.total = 0.0

    def put(self, index: int, low: float, high: float, mean: float, count: int, total: float) -> None:
        self.minimum[index], self.maximum[index], self.average[index] = low, high, mean
        self.counts[index] = count
        self.total += total

    def series(self, device_id: int, serial_no: str) -> DeviceSeries:
        readings = sum(self.counts)
        return DeviceSeries(
            device_id=device_id,
            serial_no=serial_no,
            minimum=self.minimum,
            maximum=self.maximum,
            average=self.average,
            readings=readings,
            low=min((value for value in self.minimum if value is not None), default=None),
            high=max((value for value in self.maximum if value is not None), default=None),
            # From the buckets' sums, not their averages: the same number as avg(value) over the window.
            mean=self.total / readings if readings else None,
        )


def reading_chart(*, devices: dict[int, str], metric: str, since: datetime, until: datetime) -> ReadingChart:
    """``metric`` of each device (id -> serial) over [since, until), downsampled in SQL.

    Each device is its own series: two rooms' temperatures are not averaged together.
    """
    bucket_seconds = bucket_seconds_for(until - since)
    times = bucket_starts(since, until, bucket_seconds)
    with read_connection(SensorReading).cursor() as cursor:
        cursor.execute(
            """
            SELECT device_id, date_bin(%s, measured_at, %s) AS bucket,
                   min(value), max(value), avg(value), count(*), sum(value), min(unit)
            FROM sensor_readings
            WHERE device_id = ANY(%s) AND metric = %s AND measured_at >= %s AND measured_at < %s
            GROUP BY device_id, bucket
            """,
            [timedelta(seconds=bucket_seconds), EPOCH, list(devices), metric, since, until],
        )
        rows = cursor.fetchall()
    position = {start: index for index, start in enumerate(times)}
    buckets = {device_id: _Buckets(len(times)) for device_id in devices}
    units = set()
    for device_id, bucket, low, high, mean, count, total, unit in rows:
        buckets[device_id].put(position[int(bucket.timestamp())], low, high, mean, count, total)
        if unit:
            units.add(unit)
    series = [buckets[device_id].series(device_id, serial_no) for device_id, serial_no in devices.items()]
    return ReadingChart(
        metric=metric,
        unit=", ".join(sorted(units)),
        since=since,
        until=until,
        bucket_seconds=bucket_seconds,
        times=times,
        series=series,
    )


# --- failure groups --------------------------------------------------------------------


def trend_bucket_starts(*, window: timedelta, bucket: timedelta) -> list[int]:
    """The failure-group trends' time axis: epoch seconds of each bucket ending now.

    The counts come with the groups themselves (``dead_letter_groups(trend_starts=...)``),
    in the one pass that groups the failures.
    """
    until = datetime.now(UTC)
    return bucket_starts(until - window, until, int(bucket.total_seconds()))
