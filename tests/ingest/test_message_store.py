"""Storing batches: the COPY path keeps the exact outcome of a plain ON CONFLICT insert."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from ingest.messages import DeviceBatch
from ingest.models import IngestMessage, SensorReading
from ingest.services import message_store
from ingest.services.message_store import ingest_message_note_failure, messages_store
from tests.factories import DeviceFactory

pytestmark = pytest.mark.usefixtures("committed_db")

BASE = timezone.now().replace(microsecond=0) - timedelta(hours=1)


def _batch(device_id: int, *seconds: int, metric: str = "heart_rate") -> DeviceBatch:
    return DeviceBatch(
        message_id=uuid.uuid4(),
        device_id=device_id,
        accepted_at=timezone.now(),
        readings=[
            {
                "metric": metric,
                "value": float(second),
                "unit": "bpm",
                "measured_at": BASE + timedelta(seconds=second),
            }
            for second in seconds
        ],
        events=[],
    )


@transaction.atomic
def _unnest_reference(batches: list[DeviceBatch]) -> int:
    """What the worker did before COPY: one INSERT ... SELECT FROM unnest ... ON CONFLICT."""
    rows = [
        (batch.device_id, reading["metric"], reading["value"], reading["unit"], reading["measured_at"])
        for batch in batches
        for reading in batch.readings
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO sensor_readings (device_id, metric, value, unit, measured_at)
            SELECT * FROM unnest(%s::bigint[], %s::varchar[], %s::float8[], %s::varchar[], %s::timestamptz[])
            ON CONFLICT ON CONSTRAINT uq_sensor_readings_point DO NOTHING
            """,
            [list(column) for column in zip(*rows, strict=True)],
        )
        return cursor.rowcount


def _stored() -> list[tuple]:
    return sorted(SensorReading.objects.values_list("device_id", "metric", "value", "unit", "measured_at"))


def _truncate() -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE sensor_readings")


def test_copy_stores_exactly_what_an_on_conflict_insert_stored_duplicates_absorbed():
    one, two = DeviceFactory(), DeviceFactory()
    rounds = [
        [_batch(one.id, 1, 2, 3), _batch(two.id, 1, 2)],  # nothing stored yet: the direct COPY
        [_batch(one.id, 3, 4), _batch(one.id, 4, 5), _batch(two.id, 2, 9)],  # stored and in-batch duplicates
        [_batch(two.id, 10, 11)],  # after duplicates: staged, none met, back to direct
        [_batch(one.id, 20), _batch(one.id, 20)],  # a duplicate on the direct path again
    ]
    outcomes, paths = [], []
    for batches in rounds:
        paths.append(message_store._ReadingsPath.direct)
        outcomes.append(messages_store(messages=batches))
    copied = _stored()

    _truncate()
    reference_counts = [_unnest_reference(batches) for batches in rounds]

    assert _stored() == copied
    assert [outcome.readings_inserted for outcome in outcomes] == reference_counts == [5, 3, 2, 1]
    assert [outcome.readings_duplicate for outcome in outcomes] == [0, 3, 0, 1]
    assert paths == [True, True, False, True]  # both paths were taken


def test_a_batch_with_a_bad_reading_stores_nothing_and_says_it_is_the_data():
    """The worker then stores the batch's messages one by one (tests/ingest/test_dead_letters.py)."""
    device = DeviceFactory()
    good, too_long = _batch(device.id, 1), _batch(device.id, 2, metric="m" * 40)
    for direct in (True, False):
        message_store._ReadingsPath.direct = direct
        with pytest.raises(DataError):
            messages_store(messages=[good, too_long])
        assert SensorReading.objects.count() == 0
        assert not IngestMessage.objects.exists()
    message_store._ReadingsPath.direct = True

    assert messages_store(messages=[good]).readings_inserted == 1


def test_a_reading_of_an_unknown_device_is_an_integrity_error_on_either_path():
    for direct in (True, False):
        message_store._ReadingsPath.direct = direct
        with pytest.raises(IntegrityError):
            messages_store(messages=[_batch(987_654, 1)])
    message_store._ReadingsPath.direct = True
    assert SensorReading.objects.count() == 0


def _note(message_id, *, attempts: int, received_at=None) -> None:
    ingest_message_note_failure(
        message_id=str(message_id),
        kind="device_batch",
        device_id=7,
        received_at=received_at or BASE,
        readings=3,
        events=1,
        attempts=attempts,
        error="IntegrityError: device 7 is gone",
    )


def test_a_failed_attempt_creates_the_ledger_row_then_updates_it():
    message_id = uuid.uuid4()
    _note(message_id, attempts=1)
    row = IngestMessage.objects.get(message_id=message_id)
    assert (row.status, row.device_id, row.received_at, row.readings, row.events, row.attempts) == (
        IngestMessage.Status.PENDING,
        7,
        BASE,
        3,
        1,
        1,
    )
    assert row.last_error == "IntegrityError: device 7 is gone"

    _note(message_id, attempts=2, received_at=BASE + timedelta(hours=1))
    row.refresh_from_db()
    assert (row.status, row.attempts, row.received_at) == (IngestMessage.Status.PENDING, 2, BASE)


def test_a_failed_attempt_never_downgrades_a_processed_message():
    device = DeviceFactory()
    batch = _batch(device.id, 1)
    messages_store(messages=[batch])

    _note(batch.message_id, attempts=3)

    row = IngestMessage.objects.get(message_id=batch.message_id)
    assert (row.status, row.attempts, row.last_error) == (IngestMessage.Status.PROCESSED, 0, "")
