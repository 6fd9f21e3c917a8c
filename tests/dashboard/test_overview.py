"""The overview: live panel, queues, rates, dead letters, alerts."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard.charts import TimeSeries
from dashboard.selectors import ingest_rate_series
from ingest.models import IngestMessage
from tests.broker import publish_raw
from tests.factories import AlertFactory, DeadLetterFactory, DeviceFactory
from tests.workers import wait_until

pytestmark = pytest.mark.django_db


def test_the_panel_shows_queues_dead_letters_and_open_alerts(viewer_client, ingest_queue):
    publish_raw(b"{}")
    publish_raw(b"{}")
    DeadLetterFactory.create_batch(2)
    DeadLetterFactory(status="discarded")
    AlertFactory.create_batch(3)

    context = viewer_client.get("/console/overview/panel/").context
    main = next(queue for queue in context["queues"] if queue.role == "main")
    assert (main.name, main.ready) == (ingest_queue.queue, 2)
    assert {queue.role for queue in context["queues"]} == {"main", "retry", "retry due", "dead letters"}
    assert context["dead_letters"] == {"dead": 2, "requeued": 0, "discarded": 1}
    assert context["open_alerts"] == 3


def test_the_page_refreshes_its_panel_in_place(viewer_client):
    content = viewer_client.get("/console/").content.decode()
    assert 'data-refresh-url="/console/overview/panel/?window=hour"' in content
    assert 'id="overview-panel"' in content


def test_the_panel_says_when_the_broker_is_unreachable(viewer_client, settings):
    settings.RABBITMQ_PORT = 1
    settings.RABBITMQ_MANAGEMENT_URL = ""
    response = viewer_client.get("/console/overview/panel/")
    assert b"The broker is unreachable" in response.content


def test_ingest_rate_counts_processed_messages_and_records_per_minute():
    device = DeviceFactory()
    now = timezone.now()
    for minutes_ago, readings in [(1, 10), (1, 5), (30, 7), (90, 100)]:
        IngestMessage.objects.create(
            message_id=uuid.uuid4(),
            kind="device_batch",
            device=device,
            status="processed",
            received_at=now,
            processed_at=now - timedelta(minutes=minutes_ago),
            readings=readings,
        )
    series = ingest_rate_series(window=timedelta(hours=1), bucket_minutes=1)
    assert 59 <= len(series) <= 61
    assert sum(point.messages for point in series) == 3  # the one 90 minutes ago is outside the hour
    assert sum(point.records for point in series) == 22
    day = ingest_rate_series(window=timedelta(hours=24), bucket_minutes=15)
    assert 95 <= len(day) <= 97


def test_a_time_series_travels_as_json_with_its_latest_and_peak():
    series = TimeSeries("messages/min", [60, 120, 180], [0, 10, 5])
    assert (series.latest, series.peak, series.total) == (5, 10, 15)
    assert (series.times_json, series.values_json) == ("[60, 120, 180]", "[0, 10, 5]")
    assert (TimeSeries("x", [], []).latest, TimeSeries("x", [], []).peak) == (0, 0)


def test_the_rate_charts_carry_their_points_for_the_chart_script(viewer_client):
    content = viewer_client.get("/console/overview/panel/").content.decode()
    assert 'data-chart="line"' in content and 'id="messages-chart"' in content
    assert "<svg" not in content


def test_unacked_counts_come_from_the_management_api_when_configured(viewer_client, settings, ingest_queue):
    import urllib.request

    try:
        urllib.request.urlopen(settings.RABBITMQ_MANAGEMENT_URL or "http://127.0.0.1:15672", timeout=2)
    except OSError:
        pytest.skip("the RabbitMQ management plugin is not enabled here")
    settings.RABBITMQ_MANAGEMENT_URL = settings.RABBITMQ_MANAGEMENT_URL or "http://127.0.0.1:15672"

    def main_unacked():
        context = viewer_client.get("/console/overview/panel/").context
        return next(queue for queue in context["queues"] if queue.role == "main").unacked

    # The management API reports unacked (which AMQP alone cannot), sampled every few seconds.
    assert wait_until(lambda: main_unacked() == 0, timeout=15)
