"""GET /api/v1/ingest/<id>/, /healthz, /readyz, 429 (webhooks: test_webhooks.py)."""

from __future__ import annotations

import json
import uuid

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from ingest.broker.publisher import publisher_reset
from ingest.models import DeadLetter, IngestMessage
from ingest.services.devices import device_key_issue
from tests.broker import queue_depth
from tests.factories import DeviceFactory, IngestMessageFactory

pytestmark = pytest.mark.django_db


def _reading_body() -> str:
    return json.dumps(
        {"readings": [{"metric": "heart_rate", "value": 70, "measured_at": timezone.now().isoformat()}]}
    )


def _accept(client) -> str:
    response = client.post("/api/v1/ingest/", data=_reading_body(), content_type="application/json")
    assert response.status_code == 202
    return response.json()["id"]


def test_status_of_an_accepted_message_is_pending(device_client, ingest_queue):
    message_id = _accept(device_client)

    response = device_client.get(f"/api/v1/ingest/{message_id}/")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == message_id and body["status"] == "pending"
    assert body["processed_at"] is None and body["attempts"] == 0 and body["error"] is None


def test_status_follows_the_ledger_and_the_dead_letters(device, device_client, ingest_queue):
    message_id = _accept(device_client)
    IngestMessageFactory(
        message_id=message_id,
        device=device,
        status=IngestMessage.Status.PROCESSED,
        processed_at=timezone.now(),
    )
    assert device_client.get(f"/api/v1/ingest/{message_id}/").json()["status"] == "processed"

    failed_id = _accept(device_client)
    dead = DeadLetter.objects.create(
        message_id=failed_id,
        original_queue="q",
        original_routing_key="q",
        body=b"{}",
        body_text="{}",
        error_class="IntegrityError",
        error_message="boom",
        fingerprint="f",
        attempts=4,
        first_failed_at=timezone.now(),
        last_failed_at=timezone.now(),
    )
    answer = device_client.get(f"/api/v1/ingest/{failed_id}/").json()
    assert (answer["status"], answer["attempts"], answer["error"]) == ("failed", 4, "integrity_error")
    dead.status = DeadLetter.Status.DISCARDED
    dead.save()
    assert device_client.get(f"/api/v1/ingest/{failed_id}/").json()["status"] == "discarded"


def test_another_devices_message_is_a_404(device_client, ingest_queue):
    other = DeviceFactory()
    _, other_key = device_key_issue(device=other)
    other_client = APIClient()
    other_client.credentials(HTTP_AUTHORIZATION=f"Api-Key {other_key}")
    message_id = _accept(other_client)

    assert device_client.get(f"/api/v1/ingest/{message_id}/").status_code == 404
    assert device_client.get(f"/api/v1/ingest/{uuid.uuid4()}/").status_code == 404
    assert other_client.get(f"/api/v1/ingest/{message_id}/").status_code == 200


def test_status_without_a_key_is_a_401():
    assert APIClient().get(f"/api/v1/ingest/{uuid.uuid4()}/").status_code == 401


def test_a_failed_publish_leaves_no_pending_ledger_row(device_client, settings, ingest_queue):
    broker_port = settings.RABBITMQ_PORT
    settings.RABBITMQ_PORT = 1
    publisher_reset()
    try:
        response = device_client.post(
            "/api/v1/ingest/", data=_reading_body(), content_type="application/json"
        )
    finally:
        settings.RABBITMQ_PORT = broker_port
        publisher_reset()
    assert response.status_code == 503
    assert IngestMessage.objects.count() == 0


def test_over_the_device_rate_is_a_429_with_retry_after(device_client, settings, ingest_queue):
    settings.INGEST_DEVICE_RATE = "2/minute"
    _accept(device_client)
    _accept(device_client)
    response = device_client.post("/api/v1/ingest/", data=_reading_body(), content_type="application/json")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert response.json()["code"] == "throttled"
    assert queue_depth(ingest_queue.queue) == 2


def test_healthz_answers_while_the_process_runs():
    assert APIClient().get("/healthz").json() == {"status": "ok"}


def test_readyz_is_200_when_database_and_broker_answer():
    response = APIClient().get("/readyz")
    assert response.status_code == 200


def test_readyz_is_503_naming_the_broker_when_it_is_unreachable(settings):
    settings.RABBITMQ_PORT = 1
    response = APIClient().get("/readyz")
    assert response.status_code == 503
    assert response.json()["unreachable"] == ["broker"]
