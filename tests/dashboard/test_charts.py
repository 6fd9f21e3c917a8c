"""Charts of readings: downsampled in SQL, validated like every console query; failure trends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard.selectors.charts import (
    MAX_BUCKETS,
    bucket_seconds_for,
    reading_chart,
    series_metrics,
    trend_bucket_starts,
)
from ingest.models import SensorReading
from ingest.selectors.dead_letters import dead_letter_groups
from tests.factories import DeadLetterFactory, DeviceFactory, ResidentFactory

pytestmark = pytest.mark.django_db


def _readings(device, metric: str, values_minutes_ago: list[tuple[float, int]], unit: str = "bpm") -> None:
    now = timezone.now()
    SensorReading.objects.bulk_create(
        # A microsecond apart: two readings "5 minutes ago" are two points of one bucket.
        SensorReading(
            device=device,
            metric=metric,
            value=value,
            unit=unit,
            measured_at=now - timedelta(minutes=ago) + timedelta(microseconds=index),
        )
        for index, (value, ago) in enumerate(values_minutes_ago)
    )


@pytest.mark.parametrize(
    ("span", "bucket"),
    [
        (timedelta(hours=6), 60),
        (timedelta(hours=24), 300),
        (timedelta(days=7), 1800),
        (timedelta(days=30), 7200),
        (timedelta(days=400), 86400),
        (timedelta(minutes=5), 1),
    ],
)
def test_windows_are_cut_into_readable_buckets_never_more_than_the_bound(span, bucket):
    assert bucket_seconds_for(span) == bucket
    assert span.total_seconds() / bucket <= MAX_BUCKETS


def test_a_resident_has_the_metrics_of_all_their_devices():
    resident = ResidentFactory()
    vital, room = DeviceFactory(resident=resident), DeviceFactory(resident=resident)
    _readings(vital, "heart_rate", [(70, 1)])
    _readings(vital, "spo2", [(97, 1)], unit="%")
    _readings(room, "temperature", [(21, 1)], unit="C")
    _readings(DeviceFactory(), "humidity", [(40, 1)])  # someone else's
    assert series_metrics([vital.pk, room.pk]) == {
        "heart_rate": [vital.pk],
        "spo2": [vital.pk],
        "temperature": [room.pk],
    }
    assert series_metrics([]) == {}


def test_the_chart_has_min_max_and_average_per_bucket_and_for_the_window():
    device = DeviceFactory(serial_no="VIT-1")
    _readings(device, "heart_rate", [(60, 5), (80, 5), (100, 120), (70, 600)])
    until = timezone.now()
    chart = reading_chart(
        devices={device.pk: "VIT-1"}, metric="heart_rate", since=until - timedelta(hours=6), until=until
    )
    assert chart.bucket_seconds == 60 and len(chart.times) in (360, 361)
    (series,) = chart.series
    assert (series.readings, series.low, series.high, series.mean) == (3, 60, 100, 80)  # 600 min ago is out
    filled = [
        (low, high, mean)
        for low, high, mean in zip(series.minimum, series.maximum, series.average, strict=True)
        if mean is not None
    ]
    assert sorted(filled) == [(60, 80, 70), (100, 100, 100)]
    assert chart.unit == "bpm" and chart.readings == 3


def test_an_empty_window_is_an_axis_of_empty_buckets():
    device = DeviceFactory()
    until = timezone.now()
    chart = reading_chart(
        devices={device.pk: "X"}, metric="heart_rate", since=until - timedelta(days=7), until=until
    )
    assert chart.readings == 0 and chart.series[0].mean is None
    assert set(chart.series[0].average) == {None} and len(chart.times) >= 336


def test_the_data_endpoint_answers_json_for_a_device(viewer_client):
    device = DeviceFactory(serial_no="VIT-7")
    _readings(device, "heart_rate", [(60, 5), (90, 30)])
    _readings(device, "spo2", [(95, 5)], unit="%")
    body = viewer_client.get(f"/console/charts/device/{device.pk}/data/").json()
    assert body["metrics"] == ["heart_rate", "spo2"] and body["metric"] == "heart_rate"
    assert body["window"] == "24h" and body["bucket_seconds"] == 300
    assert [(one["device"], one["low"], one["high"], one["mean"]) for one in body["series"]] == [
        ("VIT-7", 60, 90, 75)
    ]
    spo2 = viewer_client.get(f"/console/charts/device/{device.pk}/data/?metric=spo2&window=6h").json()
    assert (spo2["metric"], spo2["unit"], spo2["readings"]) == ("spo2", "%", 1)


def test_a_resident_chart_draws_one_series_per_device_having_the_metric(viewer_client):
    resident = ResidentFactory()
    bedroom = DeviceFactory(resident=resident, serial_no="ENV-BED", device_type="environment")
    kitchen = DeviceFactory(resident=resident, serial_no="ENV-KIT", device_type="environment")
    DeviceFactory(resident=resident, serial_no="VIT-9")  # no temperature
    _readings(bedroom, "temperature", [(19, 5)], unit="C")
    _readings(kitchen, "temperature", [(23, 5)], unit="C")
    body = viewer_client.get(f"/console/charts/resident/{resident.pk}/data/?metric=temperature").json()
    assert [(one["device"], one["mean"]) for one in body["series"]] == [("ENV-BED", 19), ("ENV-KIT", 23)]


def test_a_custom_window_takes_instants_with_their_offset(viewer_client):
    device = DeviceFactory()
    SensorReading.objects.create(
        device=device,
        metric="heart_rate",
        value=61,
        unit="bpm",
        measured_at=datetime(2026, 3, 1, 7, 30, tzinfo=UTC),
    )
    body = viewer_client.get(
        f"/console/charts/device/{device.pk}/data/",
        {"window": "custom", "since": "2026-03-01T08:00+01:00", "until": "2026-03-01T09:00+01:00"},
    ).json()
    assert body["readings"] == 1 and body["since"] == "2026-03-01T08:00:00+01:00"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"metric": "blood_sugar"}, "metric"),
        ({"window": "5y"}, "window"),
        ({"window": "custom", "since": "2026-03-01T08:00"}, "until"),
        ({"window": "custom", "since": "2026-03-01T08:00", "until": "2026-03-01T07:00"}, "until"),
        ({"window": "custom", "since": "2020-01-01T00:00", "until": "2026-01-01T00:00"}, "until"),
        ({"window": "custom", "since": "yesterday", "until": "2026-01-01T00:00"}, "since"),
        ({"window": "6h", "since": "2026-03-01T08:00"}, "window"),
    ],
)
def test_a_bad_chart_query_is_a_400_naming_the_field(viewer_client, query, field):
    device = DeviceFactory()
    _readings(device, "heart_rate", [(60, 5)])
    response = viewer_client.get(f"/console/charts/device/{device.pk}/data/", query)
    assert response.status_code == 400
    assert list(response.json()["fields"]) == [field]
    assert field in response.json()["error"]
    page = viewer_client.get(f"/console/charts/device/{device.pk}/", query)
    assert page.status_code == 400 and f"({field})" in page.content.decode()


def test_an_unknown_device_or_resident_is_a_404(viewer_client):
    for url in (
        "/console/charts/device/999999/",
        "/console/charts/device/999999/data/",
        "/console/charts/resident/999999/",
        "/console/charts/resident/999999/data/",
    ):
        assert viewer_client.get(url).status_code == 404, url


def test_charts_need_a_console_user(client):
    device = DeviceFactory()
    response = client.get(f"/console/charts/device/{device.pk}/data/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_a_device_without_readings_answers_no_metric_and_no_series(viewer_client):
    device = DeviceFactory()
    body = viewer_client.get(f"/console/charts/device/{device.pk}/data/").json()
    assert (body["metrics"], body["metric"], body["series"], body["readings"]) == ([], None, [], 0)


def test_the_readings_query_uses_the_unique_index_and_aggregates_in_sql():
    device = DeviceFactory()
    _readings(device, "heart_rate", [(60 + minute % 7, minute) for minute in range(300)])
    until = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        reading_chart(
            devices={device.pk: "X"}, metric="heart_rate", since=until - timedelta(hours=6), until=until
        )
    (query,) = queries.captured_queries
    assert "date_bin" in query["sql"] and "GROUP BY" in query["sql"]


def test_failure_groups_count_their_failures_per_hour_in_the_grouping_query():
    fresh = [DeadLetterFactory(error_message="boom 1") for _ in range(3)]
    now = timezone.now()
    for index, dead in enumerate(fresh):
        dead.last_failed_at = now - timedelta(hours=index * 2, minutes=1)
        dead.save(update_fields=["last_failed_at"])
    other = DeadLetterFactory(error_class="ValueError", error_message="other")
    old = DeadLetterFactory(error_class="ValueError", error_message="other")
    old.last_failed_at = now - timedelta(days=3)
    old.save(update_fields=["last_failed_at"])
    DeadLetterFactory(error_class="ValueError", error_message="other", status="requeued")
    times = trend_bucket_starts(window=timedelta(hours=24), bucket=timedelta(hours=1))
    assert len(times) == 25 and times[1] - times[0] == 3600
    starts = [datetime.fromtimestamp(start, UTC) for start in times]
    with CaptureQueriesContext(connection) as queries:
        groups = {
            group.fingerprint: group for group in dead_letter_groups(status="dead", trend_starts=starts)
        }
    assert len(queries.captured_queries) == 2  # the groups with their trends, then the samples
    trend = groups[fresh[0].fingerprint].trend
    assert len(trend) == 25 and sum(trend) == 3 and trend[-1] >= 1
    assert trend[-4] + trend[-3] == 1 and trend[-6] + trend[-5] == 1  # two and four hours ago
    assert sum(groups[other.fingerprint].trend) == 1  # three days ago is outside, requeued is not dead
    any_status = {group.fingerprint: group for group in dead_letter_groups(status="", trend_starts=starts)}
    assert sum(any_status[other.fingerprint].trend) == 2
    assert dead_letter_groups(status="dead")[0].trend == ()


def test_the_groups_page_shows_a_trend_per_group_with_a_fixed_number_of_queries(viewer_client):
    def queries_for_groups(count: int) -> int:
        for index in range(count):
            DeadLetterFactory(error_class=f"Error{index}", error_message=f"cause {index}")
        with CaptureQueriesContext(connection) as queries:
            response = viewer_client.get("/console/failed/groups/?trend=7d")
        assert response.status_code == 200
        assert response.content.decode().count('data-chart="sparkline"') == count
        # The dead-letter reads only: the session is saved now and then, whatever the page.
        # (quoted: the health line's read of "ingest_deadletterrecorder" is another table)
        return sum('"ingest_deadletter"' in query["sql"] for query in queries.captured_queries)

    assert queries_for_groups(1) == queries_for_groups(4) == 2  # groups with their trends, samples


def test_a_bad_trend_window_is_a_400_naming_the_field(viewer_client):
    response = viewer_client.get("/console/failed/groups/?trend=1y")
    assert response.status_code == 400 and "(trend)" in response.content.decode()
