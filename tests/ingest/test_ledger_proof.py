"""The ledger's exactly-once proof: deliveries failed, stored once, duplicates absorbed, rows carried."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ingest.messages import DeviceBatch, MalformedRecord, UndecodableMessage, message_decode
from ingest.models import IngestMessage
from ingest.services.message_store import ingest_message_note_failure, messages_store
from tests.factories import DeviceFactory

pytestmark = pytest.mark.usefixtures("committed_db")

BASE = timezone.now().replace(microsecond=0) - timedelta(hours=1)


def _batch(device_id: int, *seconds: int, message_id=None) -> DeviceBatch:
    return DeviceBatch(
        message_id=message_id or uuid.uuid4(),
        device_id=device_id,
        accepted_at=timezone.now(),
        readings=[
            {
                "metric": "heart_rate",
                "value": 60.0 + second,
                "unit": "bpm",
                "measured_at": BASE + timedelta(seconds=second),
            }
            for second in seconds
        ],
        events=[],
    )


def _ledger(message_id) -> IngestMessage:
    return IngestMessage.objects.get(message_id=message_id)


def test_duplicate_deliveries_are_counted_in_and_across_batches():
    device = DeviceFactory()
    once, twice = _batch(device.id, 1, 2), _batch(device.id, 3)

    outcome = messages_store(messages=[once, twice, twice])  # a duplicate inside the batch
    messages_store(messages=[twice])  # and a redelivery later

    assert outcome.messages_already_processed == 1
    assert (_ledger(once.message_id).duplicate_deliveries, _ledger(once.message_id).deliveries) == (0, 1)
    ledger = _ledger(twice.message_id)
    assert (ledger.status, ledger.duplicate_deliveries, ledger.deliveries) == ("processed", 2, 3)


def test_a_batch_without_duplicates_pays_no_extra_statement():
    device = DeviceFactory()
    with CaptureQueriesContext(connection) as queries:
        messages_store(messages=[_batch(device.id, 1), _batch(device.id, 2)])
    assert not [query for query in queries.captured_queries if "duplicate_deliveries" in query["sql"]]


def _note_failure(batch: DeviceBatch, attempts: int) -> None:
    ingest_message_note_failure(
        message_id=str(batch.message_id),
        kind="device_batch",
        device_id=batch.device_id,
        received_at=batch.accepted_at,
        readings=len(batch.readings),
        events=0,
        attempts=attempts,
        error="IntegrityError: no such device",
    )


def test_failed_deliveries_survive_a_requeue_and_an_edit_updates_the_rows_stored():
    device = DeviceFactory()
    original = _batch(device.id, 1, 2, 3)
    for attempt in (1, 2, 3):
        _note_failure(original, attempt)
    _note_failure(original, 1)  # requeued: its attempts start again, its failures do not
    assert (_ledger(original.message_id).attempts, _ledger(original.message_id).failed_deliveries) == (1, 4)

    edited = dataclasses.replace(_batch(device.id, 1, 2), message_id=original.message_id)
    messages_store(messages=[edited])
    _note_failure(edited, 2)  # a late copy failing after it was stored changes nothing but the count

    ledger = _ledger(original.message_id)
    assert (ledger.status, ledger.readings, ledger.failed_deliveries, ledger.deliveries) == (
        "processed",
        2,
        5,
        6,
    )
    assert ledger.last_error == ""


AT = "2026-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("records", "place"),
    [
        ({"readings": [{"metric": "a", "value": 1, "measured_at": AT}, {"metric": "a"}]}, "readings[1]"),
        ({"readings": [{"metric": "a", "value": "1", "measured_at": AT}]}, "readings[0]"),
        ({"events": [{"event_type": "x", "occurred_at": AT}, {"event_type": "y"}]}, "events[1]"),
    ],
)
def test_a_record_the_worker_cannot_read_is_named_by_its_place(records, place):
    message = {"schema_version": 1, "kind": "device_batch", "message_id": str(uuid.uuid4()), "device_id": 1}
    body = json.dumps({**message, "accepted_at": AT, **records}).encode()
    with pytest.raises(UndecodableMessage, match=rf"{MalformedRecord.__name__}.*{re.escape(place)}: "):
        message_decode(body)
