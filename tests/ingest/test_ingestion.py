"""The shared accept path of collection and import: chunks, content ids, one ledger query per group."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import ApplicationError
from ingest.broker.publisher import publisher_reset
from ingest.models import IngestMessage
from ingest.services.ingestion import (
    CHUNKS_PER_GROUP,
    content_message_id,
    device_batch_accept,
    records_chunks,
    records_chunks_accept_once,
)
from tests.broker import queue_depth
from tests.factories import IngestMessageFactory

pytestmark = pytest.mark.django_db


def _readings(count: int) -> list[dict]:
    now = timezone.now()
    return [
        {"metric": "heart_rate", "value": 70.0, "unit": "bpm", "measured_at": now - timedelta(seconds=n)}
        for n in range(count)
    ]


def test_records_are_cut_into_chunks_readings_first(device):
    events = [{"event_type": "door_opened", "severity": 0, "occurred_at": timezone.now(), "detail": {}}]
    chunks = records_chunks(device=device, origin="o", readings=_readings(5), events=events, size=2)

    assert [(len(chunk.readings), len(chunk.events)) for chunk in chunks] == [(2, 0), (2, 0), (1, 1)]


def test_many_chunks_cost_one_ledger_query_per_group_and_are_all_published(
    device, ingest_queue, django_assert_num_queries
):
    chunk_count = 2 * CHUNKS_PER_GROUP + 2
    chunks = records_chunks(
        device=device, origin="import:x", readings=_readings(chunk_count), events=[], size=1
    )

    with django_assert_num_queries(3):
        accepted = records_chunks_accept_once(chunks=chunks)

    assert (accepted.messages_published, accepted.records_published) == (chunk_count, chunk_count)
    assert queue_depth(ingest_queue.queue) == chunk_count
    assert IngestMessage.objects.count() == 0  # nothing written on the way


def test_chunks_the_ledger_says_are_processed_are_skipped_and_pending_ones_published_again(
    device, ingest_queue
):
    chunks = records_chunks(device=device, origin="collect:feed", readings=_readings(3), events=[], size=1)
    processed, pending = chunks[0], chunks[1]
    for chunk, status in ((processed, "processed"), (pending, "pending")):
        IngestMessageFactory(
            message_id=content_message_id(origin=chunk.origin, readings=chunk.readings, events=chunk.events),
            device=device,
            status=status,
        )

    accepted = records_chunks_accept_once(chunks=chunks)

    assert (accepted.messages_published, accepted.records_already_processed) == (2, 1)
    assert queue_depth(ingest_queue.queue) == 2


def test_an_unconfirmed_group_is_a_503_and_a_second_run_publishes_it(device, settings, ingest_queue):
    chunks = records_chunks(device=device, origin="import:y", readings=_readings(4), events=[], size=2)
    port = settings.RABBITMQ_PORT
    settings.RABBITMQ_PORT = 1
    publisher_reset()
    try:
        with pytest.raises(ApplicationError) as refused:
            records_chunks_accept_once(chunks=chunks)
    finally:
        settings.RABBITMQ_PORT = port
        publisher_reset()
    assert refused.value.code == "broker_unavailable"
    assert queue_depth(ingest_queue.queue) == 0

    assert records_chunks_accept_once(chunks=chunks).messages_published == 2
    assert queue_depth(ingest_queue.queue) == 2


def test_an_api_message_is_published_without_a_database_query(
    device, ingest_queue, django_assert_num_queries
):
    with django_assert_num_queries(0):
        batch = device_batch_accept(device=device, readings=_readings(1), events=[])

    assert batch.message_id.version == 8
    assert queue_depth(ingest_queue.queue) == 1
