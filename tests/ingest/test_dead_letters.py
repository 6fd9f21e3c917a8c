"""Retries with growing delays, dead letters, requeue and discard, on the real broker and DB."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from core.errors import ApplicationError
from ingest.messages import DEVICE_BATCH, FailureEnvelope
from ingest.models import DeadLetter, DeadLetterAction, IngestMessage, SensorReading
from ingest.selectors.message_status import ingest_message_status
from ingest.services.dead_letters import (
    dead_letter_discard,
    dead_letter_requeue,
    error_fingerprint,
)
from ingest.services.ingestion import device_batch_accept
from tests.broker import publish_device_batch, publish_raw, queue_depth
from tests.factories import DeviceFactory, reading_record
from tests.workers import database_unavailable, wait_until, worker_thread

pytestmark = pytest.mark.usefixtures("committed_db")

MISSING_DEVICE_ID = 987_654


def _dead_letter_count() -> int:
    return DeadLetter.objects.count()


def test_a_poison_message_is_retried_with_growing_delays_then_dead_lettered(ingest_queue, settings):
    device = DeviceFactory()
    good_before = device_batch_accept(device=device, readings=[reading_record(1)], events=[])
    poison = publish_device_batch(
        device_id=MISSING_DEVICE_ID, readings=[reading_record(2)]
    )  # violates devices FK
    good_after = device_batch_accept(device=device, readings=[reading_record(3)], events=[])

    with worker_thread(ingest_queue) as worker:
        assert wait_until(lambda: _dead_letter_count() == 1)

    # The rest of its batch committed at once.
    assert SensorReading.objects.count() == 2
    processed = IngestMessage.objects.filter(status="processed").values_list("message_id", flat=True)
    assert set(processed) == {good_before.message_id, good_after.message_id}

    dead = DeadLetter.objects.get()
    assert dead.message_id == poison.message_id
    assert dead.attempts == settings.INGEST_MAX_ATTEMPTS == 4
    assert "ForeignKeyViolation" in dead.error_class or "IntegrityError" in dead.error_class
    assert "devices" in dead.error_message
    assert "Traceback" in dead.traceback
    assert dead.original_queue == ingest_queue.queue
    assert dead.status == DeadLetter.Status.DEAD
    assert json.loads(dead.body_text)["device_id"] == MISSING_DEVICE_ID
    failures = FailureEnvelope.from_headers(dead.headers).failures
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(failures, failures[1:], strict=False)]
    # Retry tiers of 0.2, 0.4 and 0.8 s: every wait is at least its tier and longer than the last.
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4 and gaps[2] >= 0.8
    assert gaps == sorted(gaps)
    assert worker.totals.retried == 3 and worker.totals.dead_lettered == 1
    assert dead.actions.get().action == DeadLetterAction.Action.RECORDED
    for queue in ingest_queue.queue_names:
        assert queue_depth(queue) == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b'{"schema_version": 99, "kind": "device_batch"}', "unknown schema version 99"),
        (b'{"schema_version": 1, "kind": "teleport"}', "unknown message kind"),
        (b'{"schema_version": 1, "kind": "device_batch", "device_id": 1}', "malformed"),
    ],
)
def test_an_undecodable_message_is_dead_lettered_at_once(ingest_queue, body, reason):
    message_id = str(uuid.uuid4())
    publish_raw(body, message_id)

    with worker_thread(ingest_queue) as worker:
        assert wait_until(lambda: _dead_letter_count() == 1)

    dead = DeadLetter.objects.get()
    assert str(dead.message_id) == message_id
    assert dead.attempts == 1
    assert dead.error_class.endswith("UndecodableMessage")
    assert reason in dead.error_message
    assert bytes(dead.body) == body
    assert worker.totals.retried == 0


def _poisoned_dead_letter(ingest_queue) -> tuple[DeadLetter, object]:
    device = DeviceFactory()
    poison = publish_device_batch(device_id=MISSING_DEVICE_ID, readings=[reading_record(5)])
    IngestMessage.objects.create(
        message_id=poison.message_id, kind=DEVICE_BATCH, device_id=device.id, received_at=timezone.now()
    )
    with worker_thread(ingest_queue):
        assert wait_until(lambda: _dead_letter_count() == 1)
    return DeadLetter.objects.get(), device


def test_edit_and_requeue_is_processed_exactly_once(ingest_queue):
    dead, device = _poisoned_dead_letter(ingest_queue)
    operator = get_user_model().objects.create_user("olivia", is_staff=True)
    # The device it was sent for is registered late; the operator also corrects a reading.
    # (An edit may change only the records: the device stays the one that sent them.)
    registered_late = DeviceFactory(id=MISSING_DEVICE_ID)
    edited = json.loads(dead.body_text)
    edited["readings"][0]["value"] = 71.0

    dead_letter_requeue(
        dead_letter_id=dead.pk,
        actor=operator,
        reason="device registered late",
        edited_body=json.dumps(edited),
    )
    edited = json.loads(DeadLetter.objects.get(pk=dead.pk).body_text)
    with pytest.raises(ApplicationError, match="already requeued"):
        dead_letter_requeue(dead_letter_id=dead.pk, actor=operator)
    # The same message published twice more (a duplicate, a stale retry): still once.
    publish_raw(json.dumps(edited).encode(), str(dead.message_id))

    with worker_thread(ingest_queue):
        assert wait_until(lambda: SensorReading.objects.count() == 1)
        assert wait_until(lambda: queue_depth(ingest_queue.queue) == 0)

    assert (SensorReading.objects.get().device_id, SensorReading.objects.get().value) == (
        registered_late.id,
        71.0,
    )
    status = ingest_message_status(device=device, message_id=dead.message_id)
    assert status.status == "processed"
    dead.refresh_from_db()
    assert dead.status == DeadLetter.Status.REQUEUED
    action = dead.actions.get(action=DeadLetterAction.Action.EDITED_AND_REQUEUED)
    assert (action.actor_name, action.reason) == ("olivia", "device registered late")
    assert json.loads(bytes(action.previous_body))["readings"][0]["value"] == 70.0
    assert json.loads(dead.body_text)["readings"][0]["value"] == 71.0


def test_requeue_without_edit_that_fails_again_comes_back_as_dead(ingest_queue):
    dead, _ = _poisoned_dead_letter(ingest_queue)
    dead_letter_requeue(dead_letter_id=dead.pk, actor=None)

    with worker_thread(ingest_queue):
        assert wait_until(lambda: DeadLetter.objects.filter(status="dead").exists())

    dead.refresh_from_db()
    actions = list(dead.actions.values_list("action", flat=True))
    assert actions == ["recorded", "requeued", "recorded"]
    assert dead.attempts == 4  # a requeued message gets all its attempts again


@pytest.mark.parametrize(
    ("edited_body", "field_message"),
    [
        ("{not json", "not JSON"),
        (
            json.dumps(
                {
                    "schema_version": 1,
                    "kind": "device_batch",
                    "message_id": str(uuid.uuid4()),
                    "device_id": 1,
                    "accepted_at": "2026-01-01T00:00:00+00:00",
                }
            ),
            "message_id",
        ),
    ],
)
def test_an_invalid_edit_is_refused_and_nothing_is_published(ingest_queue, edited_body, field_message):
    dead, _ = _poisoned_dead_letter(ingest_queue)
    with pytest.raises(ApplicationError) as excinfo:
        dead_letter_requeue(dead_letter_id=dead.pk, actor=None, reason="fix", edited_body=edited_body)
    assert field_message in str(excinfo.value.fields)
    dead.refresh_from_db()
    assert dead.status == DeadLetter.Status.DEAD
    assert queue_depth(ingest_queue.queue) == 0


def test_an_edit_needs_a_reason(ingest_queue):
    dead, _ = _poisoned_dead_letter(ingest_queue)
    with pytest.raises(ApplicationError, match="reason is required"):
        dead_letter_requeue(dead_letter_id=dead.pk, actor=None, reason=" ", edited_body=dead.body_text)


def test_discard_needs_a_reason_and_is_audited(ingest_queue):
    dead, device = _poisoned_dead_letter(ingest_queue)
    with pytest.raises(ApplicationError, match="reason is required"):
        dead_letter_discard(dead_letter_id=dead.pk, actor=None, reason="")

    dead_letter_discard(dead_letter_id=dead.pk, actor=None, reason="test device, ignore")

    dead.refresh_from_db()
    assert dead.status == DeadLetter.Status.DISCARDED
    assert dead.actions.last().reason == "test device, ignore"
    assert ingest_message_status(device=device, message_id=dead.message_id).status == "discarded"
    with pytest.raises(ApplicationError, match="already discarded"):
        dead_letter_requeue(dead_letter_id=dead.pk, actor=None)


def test_a_dead_letter_waits_on_its_queue_while_the_database_is_down(ingest_queue):
    publish_raw(b"garbage")
    with database_unavailable():
        with worker_thread(ingest_queue):
            # Dead-lettered on the broker (no database needed), not yet recorded.
            assert wait_until(lambda: queue_depth(ingest_queue.queue) == 0)
            time.sleep(1.5)
            assert _dead_letter_count() == 0
    with worker_thread(ingest_queue):
        assert wait_until(lambda: _dead_letter_count() == 1)
    assert queue_depth(ingest_queue.dead_queue) == 0


def test_fingerprint_groups_errors_that_differ_only_in_values():
    first = error_fingerprint(
        error_class="IntegrityError", error_message='Key (device_id)=(12) is not present in table "devices".'
    )
    second = error_fingerprint(
        error_class="IntegrityError", error_message='Key (device_id)=(99) is not present in table "devices".'
    )
    other = error_fingerprint(error_class="DataError", error_message="value too long")
    assert first == second != other
