"""The worker against the real broker and database: store, ack after commit, exactly once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ingest.models import Alert, AlertStatus, Device, DeviceEvent, IngestMessage, SensorReading
from ingest.services.ingestion import device_batch_accept
from ingest.worker import IngestWorker
from tests.broker import publish_device_batch, publish_raw, queue_depth
from tests.factories import DeviceFactory

pytestmark = pytest.mark.usefixtures("committed_db")


def _drain(topology) -> IngestWorker:
    worker = IngestWorker(topology=topology, batch_size=50, batch_max_wait=0.05, idle_poll=0.2)
    worker.run(stop_when_idle=True)
    return worker


def _reading(metric="heart_rate", value=72.0, minutes_ago=1):
    return {
        "metric": metric,
        "value": value,
        "unit": "bpm",
        "measured_at": timezone.now() - timedelta(minutes=minutes_ago),
    }


def test_batches_are_stored_and_acked(ingest_queue):
    device = DeviceFactory()
    device_batch_accept(device=device, readings=[_reading(), _reading("spo2", 97)], events=[])
    device_batch_accept(device=device, readings=[_reading(minutes_ago=2)], events=[])

    worker = _drain(ingest_queue)

    assert SensorReading.objects.filter(device=device).count() == 3
    assert IngestMessage.objects.filter(status="processed").count() == 2
    assert worker.totals.readings_inserted == 3
    assert queue_depth(ingest_queue.queue) == 0  # acked, not merely delivered
    device.refresh_from_db()
    assert device.last_seen_at is not None


def test_a_critical_event_raises_an_alert_for_the_resident(ingest_queue):
    device = DeviceFactory()
    event = {
        "event_type": "fall_detected",
        "severity": 3,
        "occurred_at": timezone.now(),
        "detail": {"room": "bath"},
    }
    info = {**event, "event_type": "door_opened", "severity": 0}
    device_batch_accept(device=device, readings=[], events=[event, info])

    _drain(ingest_queue)

    assert DeviceEvent.objects.filter(device=device).count() == 2
    [alert] = Alert.objects.all()
    assert (alert.resident_id, alert.device_id, alert.status) == (
        device.resident_id,
        device.id,
        AlertStatus.OPEN,
    )
    assert "fall_detected" in alert.message


def test_a_message_delivered_twice_is_stored_once(ingest_queue):
    device = DeviceFactory()
    batch = publish_device_batch(
        device_id=device.id,
        readings=[_reading()],
        events=[{"event_type": "motion", "severity": 0, "occurred_at": timezone.now(), "detail": {}}],
    )
    publish_raw(batch.to_body(), str(batch.message_id))

    worker = _drain(ingest_queue)

    assert SensorReading.objects.count() == 1
    assert DeviceEvent.objects.count() == 1
    assert worker.totals.duplicates_skipped == 1
    assert queue_depth(ingest_queue.queue) == 0


def test_a_redelivery_after_a_later_run_inserts_nothing(ingest_queue):
    device = DeviceFactory()
    batch = publish_device_batch(device_id=device.id, readings=[_reading()])
    _drain(ingest_queue)
    publish_raw(batch.to_body(), str(batch.message_id))  # e.g. the ack was lost when a worker crashed

    worker = _drain(ingest_queue)

    assert SensorReading.objects.count() == 1
    assert worker.totals.duplicates_skipped == 1


def test_the_same_point_in_two_messages_is_absorbed_by_the_unique_constraint(ingest_queue):
    device = DeviceFactory()
    point = _reading()
    device_batch_accept(device=device, readings=[point], events=[])
    device_batch_accept(device=device, readings=[point, _reading("spo2")], events=[])

    worker = _drain(ingest_queue)

    assert SensorReading.objects.count() == 2
    assert worker.totals.messages == 2
    assert queue_depth(ingest_queue.queue) == 0


def test_stop_request_finishes_the_current_batch(ingest_queue):
    device = DeviceFactory()
    for minute in range(5):
        device_batch_accept(device=device, readings=[_reading(minutes_ago=minute + 1)], events=[])
    worker = IngestWorker(topology=ingest_queue, batch_size=50, batch_max_wait=0.5)
    worker.request_stop()

    worker.run()

    # Stopped before consuming: nothing taken, nothing lost.
    assert SensorReading.objects.count() == 0
    assert queue_depth(ingest_queue.queue) == 5
    assert Device.objects.filter(last_seen_at__isnull=False).count() == 0
