"""The worker against the real broker and database: store, ack after commit, exactly once."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from ingest.models import Alert, AlertStatus, Device, DeviceEvent, IngestMessage, SensorReading
from ingest.services.ingestion import device_batch_accept
from ingest.worker import IngestWorker
from ingest.worker import ingest_handler as worker_module
from tests.broker import publish_device_batch, publish_raw, queue_depth
from tests.factories import DeviceFactory
from tests.workers import database_unavailable, wait_until, worker_thread

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
    # The same statement records which event raised it (the customer's table cannot).
    assert alert.origin.event == DeviceEvent.objects.get(device=device, event_type="fall_detected")


def test_each_of_several_critical_events_in_one_batch_is_linked_to_its_own_alert(ingest_queue):
    device = DeviceFactory()
    now = timezone.now()
    events = [
        {"event_type": "sos", "severity": 3, "occurred_at": now - timedelta(minutes=minutes), "detail": {}}
        for minutes in (1, 2, 3)
    ]
    device_batch_accept(device=device, readings=[], events=events)

    _drain(ingest_queue)

    alerts = Alert.objects.select_related("origin__event").order_by("id")
    assert len(alerts) == 3
    assert len({alert.origin.event_id for alert in alerts}) == 3
    for alert in alerts:
        # each alert's message names the time of the event it is linked to
        assert f"{alert.origin.event.occurred_at:%H:%M:%S} UTC" in alert.message


def _motion(number: int = 0) -> dict:
    return {
        "event_type": "motion",
        "severity": 0,
        "occurred_at": timezone.now(),
        "detail": {"number": number},
    }


def test_a_message_delivered_twice_in_one_batch_is_stored_once(ingest_queue):
    device = DeviceFactory()
    batch = publish_device_batch(device_id=device.id, readings=[_reading()], events=[_motion()])
    publish_raw(batch.to_body(), str(batch.message_id))

    worker = _drain(ingest_queue)

    assert SensorReading.objects.count() == 1
    assert DeviceEvent.objects.count() == 1
    assert worker.totals.duplicates_skipped == 1
    assert queue_depth(ingest_queue.queue) == 0


def test_a_redelivery_in_a_later_batch_inserts_nothing(ingest_queue):
    """Only the ledger stands between a redelivered event and a second row: events have no
    unique constraint, and the first copy's batch has long been committed."""
    device = DeviceFactory()
    batch = publish_device_batch(device_id=device.id, readings=[_reading()], events=[_motion()])
    _drain(ingest_queue)
    assert DeviceEvent.objects.count() == 1
    publish_raw(batch.to_body(), str(batch.message_id))  # e.g. the ack was lost when a worker crashed

    worker = _drain(ingest_queue)

    assert DeviceEvent.objects.count() == 1
    assert SensorReading.objects.count() == 1
    assert worker.totals.duplicates_skipped == 1
    assert worker.totals.events_inserted == 0
    assert queue_depth(ingest_queue.queue) == 0


def test_the_same_point_in_two_messages_is_absorbed_by_the_unique_constraint(ingest_queue):
    device = DeviceFactory()
    point = _reading()
    device_batch_accept(device=device, readings=[point], events=[])
    device_batch_accept(device=device, readings=[point, _reading("spo2")], events=[])

    worker = _drain(ingest_queue)

    assert SensorReading.objects.count() == 2
    assert worker.totals.messages == 2
    assert queue_depth(ingest_queue.queue) == 0


def _publish_numbered(device, number: int) -> None:
    publish_device_batch(
        device_id=device.id, readings=[_reading(minutes_ago=number + 1)], events=[_motion(number)]
    )


def _stop_once_a_batch_commits(monkeypatch, worker: IngestWorker) -> threading.Event:
    """Ask the worker to stop the moment a batch has committed, before it is acked: the
    exact point a SIGTERM can land while a batch is being finished. Returns an event set
    once the worker first tried to store a batch."""
    store = worker_module.messages_store
    store_attempted = threading.Event()

    def store_then_stop(*, messages):
        store_attempted.set()
        outcome = store(messages=messages)
        worker.request_stop()
        return outcome

    monkeypatch.setattr(worker_module, "messages_store", store_then_stop)
    return store_attempted


def test_stop_request_finishes_the_current_batch(ingest_queue, monkeypatch):
    """A stop that arrives while a batch is held finishes it, and what was delivered meanwhile."""
    device = DeviceFactory()
    with worker_thread(ingest_queue, batch_size=50) as worker:
        store_attempted = _stop_once_a_batch_commits(monkeypatch, worker)
        with database_unavailable():
            for number in range(3):
                _publish_numbered(device, number)
            # The worker holds its first batch and waits for the database.
            assert store_attempted.wait(timeout=20)
            for number in range(3, 7):
                _publish_numbered(device, number)
            # Delivered to the worker while the first batch still waits.
            assert wait_until(lambda: queue_depth(ingest_queue.queue) == 0)
            time.sleep(1)
            assert SensorReading.objects.count() == 0
        # The database is back: the held batch commits, the stop arrives, the rest is finished.
        assert wait_until(lambda: worker.stop_requested, timeout=30)

    assert SensorReading.objects.count() == 7
    assert DeviceEvent.objects.count() == 7
    assert IngestMessage.objects.filter(status="processed").count() == 7
    assert worker.totals.batches == 2
    assert queue_depth(ingest_queue.queue) == 0  # acked: nothing came back when the worker left


def test_a_stop_while_a_batch_fills_stores_and_acks_what_was_delivered(ingest_queue):
    device = DeviceFactory()
    with worker_thread(ingest_queue, batch_size=50, batch_max_wait=3.0) as worker:
        for minute in range(3):
            _publish_numbered(device, minute)
        # Delivered, and the worker waits up to 3 s for its batch to fill: stop now.
        assert wait_until(lambda: queue_depth(ingest_queue.queue) == 0)
        worker.request_stop()

    assert SensorReading.objects.count() == 3
    assert DeviceEvent.objects.count() == 3
    assert queue_depth(ingest_queue.queue) == 0
    assert worker.totals.messages == 3


def test_a_stop_before_running_takes_nothing(ingest_queue):
    device = DeviceFactory()
    for minute in range(5):
        device_batch_accept(device=device, readings=[_reading(minutes_ago=minute + 1)], events=[])
    worker = IngestWorker(topology=ingest_queue, batch_size=50, batch_max_wait=0.5)
    worker.request_stop()

    worker.run()

    assert SensorReading.objects.count() == 0
    assert queue_depth(ingest_queue.queue) == 5
    assert Device.objects.filter(last_seen_at__isnull=False).count() == 0


def test_at_low_load_a_message_is_stored_at_once_not_after_the_batch_wait(ingest_queue):
    device = DeviceFactory()
    with worker_thread(ingest_queue, batch_size=200, batch_max_wait=3.0):
        time.sleep(0.5)  # the worker is connected and idle
        started = time.monotonic()
        device_batch_accept(device=device, readings=[_reading()], events=[])
        assert wait_until(lambda: SensorReading.objects.exists(), timeout=10, interval=0.01)
        stored_after = time.monotonic() - started

    assert stored_after < 1.0, f"stored after {stored_after:.2f} s: the worker waited for a batch to fill"


MISSING_DEVICE_ID = 987_654


def test_a_failed_attempt_makes_the_ledger_row_the_status_api_reads(ingest_queue):
    """The accept path writes no ledger row: the worker's first failure makes it."""
    poison = publish_device_batch(device_id=MISSING_DEVICE_ID, readings=[_reading()])
    assert not IngestMessage.objects.exists()

    with worker_thread(ingest_queue) as worker:
        assert wait_until(lambda: worker.totals.retried >= 1)

    row = IngestMessage.objects.get(message_id=poison.message_id)
    assert row.status == IngestMessage.Status.PENDING
    assert row.attempts >= 1
    assert row.device_id == MISSING_DEVICE_ID
    assert row.received_at == poison.accepted_at
    assert "devices" in row.last_error


def test_prefetch_fitted_to_the_messages_loses_and_repeats_nothing(ingest_queue):
    """The first batch is small; raising the prefetch re-subscribes with messages in flight."""
    device = DeviceFactory()
    for number in range(120):
        _publish_numbered(device, number)

    worker = IngestWorker(topology=ingest_queue, batch_size=50, batch_max_wait=0.05, idle_poll=0.2)
    worker.run(stop_when_idle=True)

    assert worker.totals.batches < 10  # the batches grew past the first, small prefetch
    assert DeviceEvent.objects.count() == 120  # no event has a unique constraint: none twice
    assert {event.detail["number"] for event in DeviceEvent.objects.all()} == set(range(120))
    assert queue_depth(ingest_queue.queue) == 0
