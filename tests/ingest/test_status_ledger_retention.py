"""The status API without a ledger row at accept: every state, and after housekeeping pruned it."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from ingest.message_ids import message_id_issue
from ingest.models import DeadLetter, IngestMessage
from scheduler.services.housekeeping import housekeeping_prune
from tests.factories import DeadLetterFactory, DeviceFactory, IngestMessageFactory

pytestmark = pytest.mark.django_db


def _accept(client) -> str:
    body = {"readings": [{"metric": "heart_rate", "value": 70, "measured_at": timezone.now().isoformat()}]}
    response = client.post("/api/v1/ingest/", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 202
    return response.json()["id"]


def _status(client, message_id) -> tuple[int, dict]:
    response = client.get(f"/api/v1/ingest/{message_id}/")
    return response.status_code, response.json()


def test_accepting_writes_no_ledger_row_and_the_id_answers_pending_at_once(device_client, ingest_queue):
    message_id = _accept(device_client)

    assert IngestMessage.objects.count() == 0
    code, answer = _status(device_client, message_id)
    assert code == 200
    assert (answer["status"], answer["attempts"], answer["error"], answer["processed_at"]) == (
        "pending",
        0,
        None,
        None,
    )
    received_at = timezone.datetime.fromisoformat(answer["received_at"])
    assert abs(received_at - timezone.now()) < timedelta(seconds=5)


def test_every_state_from_the_ledger_and_the_dead_letters(device, device_client, ingest_queue):
    retried, processed, failed, discarded = (_accept(device_client) for _ in range(4))
    IngestMessageFactory(message_id=retried, device=device, attempts=1, last_error="builtins.KeyError: x")
    IngestMessageFactory(
        message_id=processed,
        device=device,
        status=IngestMessage.Status.PROCESSED,
        processed_at=timezone.now(),
    )
    IngestMessageFactory(message_id=failed, device=device, attempts=4)
    DeadLetterFactory(message_id=failed, device_id=device.pk, attempts=4)
    # No ledger row at all: the worker's write of the failure is best effort.
    DeadLetterFactory(message_id=discarded, device_id=None, attempts=4, status=DeadLetter.Status.DISCARDED)

    states = {
        message_id: _status(device_client, message_id)[1] for message_id in (retried, processed, failed)
    }
    assert (states[retried]["status"], states[retried]["attempts"]) == ("pending", 1)
    assert states[retried]["error"] == "processing_error"
    assert states[processed]["status"] == "processed" and states[processed]["processed_at"]
    assert (states[failed]["status"], states[failed]["attempts"]) == ("failed", 4)
    assert _status(device_client, discarded)[1]["status"] == "discarded"


def test_ids_of_other_devices_unknown_or_tampered_are_404(device, device_client, ingest_queue):
    other = DeviceFactory()
    others_id = message_id_issue(device_id=other.pk)
    IngestMessageFactory(message_id=message_id_issue(device_id=other.pk), device=other)
    own = uuid.UUID(_accept(device_client))
    tampered = uuid.UUID(int=own.int ^ 1)

    for message_id in (
        others_id,
        IngestMessage.objects.get(device=other).message_id,
        uuid.uuid4(),
        tampered,
    ):
        code, answer = _status(device_client, message_id)
        assert (code, answer["code"]) == (404, "not_found"), message_id


def test_after_housekeeping_pruned_the_row_the_outcome_is_gone_not_pending(device, device_client, settings):
    settings.RETENTION_LEDGER_DAYS = 30
    now = timezone.now()
    accepted_at = now - timedelta(days=31)
    message_id = message_id_issue(device_id=device.pk, at=accepted_at)
    IngestMessageFactory(
        message_id=message_id,
        device=device,
        received_at=accepted_at,
        status=IngestMessage.Status.PROCESSED,
        processed_at=accepted_at + timedelta(seconds=1),
    )
    assert _status(device_client, message_id)[1]["status"] == "processed"

    assert housekeeping_prune(now=now)["ledger"] == 1

    code, answer = _status(device_client, message_id)
    assert (code, answer["code"]) == (410, "expired")
    assert "30 days" in answer["message"]


def test_a_recent_id_is_pending_and_an_old_one_expired_at_the_retention_edge(device, device_client, settings):
    settings.RETENTION_LEDGER_DAYS = 30
    young = message_id_issue(device_id=device.pk, at=timezone.now() - timedelta(days=29, hours=23))
    old = message_id_issue(device_id=device.pk, at=timezone.now() - timedelta(days=30, minutes=1))

    assert _status(device_client, young) == (200, _status(device_client, young)[1])
    assert _status(device_client, young)[1]["status"] == "pending"
    assert _status(device_client, old)[0] == 410
