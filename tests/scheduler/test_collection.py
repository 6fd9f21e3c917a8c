"""Collection sources against a real HTTP server, the real broker and database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ingest.messages import message_decode
from ingest.models import DeviceEvent, SensorReading
from scheduler.models import CollectionRun, CollectionSource
from scheduler.services.collection import sources_collect_due
from tests.broker import queue_depth, queued_messages
from tests.factories import DeviceFactory
from tests.workers import wait_until, worker_thread

pytestmark = pytest.mark.django_db


def _iso(minutes_ago: int = 1) -> str:
    return (timezone.now() - timedelta(minutes=minutes_ago)).isoformat()


def _source(url: str, **fields) -> CollectionSource:
    return CollectionSource.objects.create(
        name=fields.pop("name", "carelink"),
        url=url,
        device=fields.pop("device", None) or DeviceFactory(),
        **fields,
    )


GOOD = {
    "readings": [
        {"metric": "heart_rate", "value": 71, "unit": "bpm", "measured_at": _iso(2)},
        {"metric": "spo2", "value": 97, "measured_at": _iso(2)},
    ],
    "events": [{"event_type": "door_opened", "occurred_at": _iso(3)}],
}


def test_good_data_is_published_like_the_api_and_the_run_recorded(partner, ingest_queue):
    source = _source(partner.serve("/good", GOOD), auth_header="Authorization: Bearer s3cret")

    [run] = sources_collect_due()

    assert (run.status, run.fetched, run.published, run.rejected) == ("ok", 3, 3, 0)
    assert partner.headers["/good"]["Authorization"] == "Bearer s3cret"
    [(properties, body)] = queued_messages(ingest_queue.queue)
    batch = message_decode(body)
    assert batch.device_id == source.device_id
    assert [r["metric"] for r in batch.readings] == ["heart_rate", "spo2"]
    assert [e["event_type"] for e in batch.events] == ["door_opened"]
    source.refresh_from_db()
    assert source.last_run_at is not None


@pytest.mark.usefixtures("committed_db")
def test_collected_records_reach_the_customer_tables(partner, ingest_queue):
    source = _source(partner.serve("/good", GOOD))
    sources_collect_due()
    with worker_thread(ingest_queue):
        assert wait_until(lambda: SensorReading.objects.count() == 2 and DeviceEvent.objects.count() == 1)
    assert set(SensorReading.objects.values_list("device_id", flat=True)) == {source.device_id}


def test_invalid_records_are_rejected_with_reasons_and_the_rest_published(partner, ingest_queue):
    body = {
        "readings": [
            GOOD["readings"][0],
            {"metric": "Heart Rate", "value": "high", "measured_at": "yesterday"},
        ],
        "events": [{"event_type": "fall", "severity": 9, "occurred_at": _iso()}],
    }
    _source(partner.serve("/mixed", body))

    [run] = sources_collect_due()

    assert (run.status, run.fetched, run.published, run.rejected) == ("partial", 3, 1, 2)
    reading_rejection, event_rejection = run.rejections
    assert reading_rejection["kind"] == "reading" and reading_rejection["index"] == 1
    assert set(reading_rejection["errors"]) == {"metric", "value", "measured_at"}
    assert event_rejection["kind"] == "event" and "severity" in event_rejection["errors"]
    assert len(queued_messages(ingest_queue.queue)) == 1


@pytest.mark.parametrize(
    ("route", "status", "body", "delay", "error", "hits"),
    [
        ("/malformed", 200, b"<html>not json", 0, "not JSON", 1),
        ("/list", 200, b"[1, 2]", 0, "not a JSON object", 1),
        ("/boom", 500, b"{}", 0, "HTTP 500", 3),  # retried, then given up
        ("/forbidden", 403, b"{}", 0, "HTTP 403", 1),  # not retried
        ("/slow", 200, b"{}", 2.0, "timed out", 3),
    ],
)
def test_a_failing_source_is_recorded_and_publishes_nothing(
    partner, ingest_queue, route, status, body, delay, error, hits
):
    _source(partner.serve(route, body, status=status, delay=delay))

    [run] = sources_collect_due()

    assert run.status == "failed"
    assert error in run.error
    assert partner.hits[route] == hits
    assert queued_messages(ingest_queue.queue) == []


def test_one_failing_source_does_not_stop_the_others(partner, ingest_queue):
    _source(partner.serve("/boom", b"{}", status=500), name="a-broken")
    _source(partner.serve("/good", GOOD), name="b-good")

    runs = sources_collect_due()

    assert [(run.source.name, run.status) for run in runs] == [("a-broken", "failed"), ("b-good", "ok")]
    assert CollectionRun.objects.count() == 2


def test_only_due_and_enabled_sources_are_collected(partner, ingest_queue):
    now = timezone.now()
    url = partner.serve("/good", GOOD)
    _source(url, name="due", interval_seconds=60, last_run_at=now - timedelta(seconds=61))
    _source(url, name="not-yet", interval_seconds=60, last_run_at=now - timedelta(seconds=30))
    _source(url, name="disabled", is_enabled=False)
    assert [run.source.name for run in sources_collect_due(now=now)] == ["due"]


def test_a_retired_device_source_fails_without_fetching(partner, ingest_queue):
    _source(partner.serve("/good", GOOD), device=DeviceFactory(status="retired"))
    [run] = sources_collect_due()
    assert run.status == "failed" and "retired" in run.error
    assert "/good" not in partner.hits


def test_broker_down_fails_the_run(partner, ingest_queue, settings):
    from ingest.broker.publisher import publisher_reset

    _source(partner.serve("/good", GOOD))
    port = settings.RABBITMQ_PORT
    settings.RABBITMQ_PORT = 1
    publisher_reset()
    try:
        [run] = sources_collect_due()
    finally:
        settings.RABBITMQ_PORT = port
        publisher_reset()
    assert run.status == "failed" and "broker" in run.error


@pytest.mark.usefixtures("committed_db")
def test_a_feed_answering_the_same_records_again_stores_them_once(partner, ingest_queue):
    source = _source(partner.serve("/same", GOOD), interval_seconds=1)
    sources_collect_due()
    with worker_thread(ingest_queue):
        assert wait_until(lambda: DeviceEvent.objects.count() == 1)
    [second] = sources_collect_due(now=timezone.now() + timedelta(seconds=5))
    assert (second.status, second.fetched, second.published) == ("ok", 3, 0)
    assert queue_depth(ingest_queue.queue) == 0
    assert DeviceEvent.objects.filter(device=source.device).count() == 1
