"""The status API tells a device why its message failed as a stable code, never the
database's own text; staff see the details in the console."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.utils import timezone

from ingest.models import IngestMessage
from tests.factories import DeadLetterFactory, IngestMessageFactory, UserFactory

pytestmark = pytest.mark.django_db

POSTGRES_TEXT = (
    'value too long for type character varying(32)\nDETAIL:  Key (serial_no)=(X) in table "devices"'
)


def _accept(client) -> str:
    body = {"readings": [{"metric": "heart_rate", "value": 70, "measured_at": timezone.now().isoformat()}]}
    response = client.post("/api/v1/ingest/", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 202
    return response.json()["id"]


@pytest.mark.parametrize(
    ("error_class", "code"),
    [
        ("django.db.utils.DataError", "invalid_data"),
        ("django.db.utils.IntegrityError", "integrity_error"),
        ("ingest.messages.UndecodableMessage", "undecodable"),
        ("builtins.KeyError", "processing_error"),
    ],
)
def test_a_dead_letter_is_reported_as_a_code_without_the_database_text(
    device, device_client, ingest_queue, error_class, code
):
    message_id = _accept(device_client)
    DeadLetterFactory(
        message_id=message_id, device_id=device.pk, error_class=error_class, error_message=POSTGRES_TEXT
    )

    response = device_client.get(f"/api/v1/ingest/{message_id}/")

    assert response.json()["status"] == "failed"
    assert response.json()["error"] == code
    text = response.content.decode()
    assert "devices" not in text and "varying" not in text and "DataError" not in text


def test_a_message_being_retried_is_reported_as_a_code(device, device_client, ingest_queue):
    message_id = _accept(device_client)
    IngestMessageFactory(
        message_id=message_id,
        device=device,
        attempts=2,
        last_error=f"django.db.utils.DataError: {POSTGRES_TEXT}",
    )

    answer = device_client.get(f"/api/v1/ingest/{message_id}/").json()

    assert (answer["status"], answer["attempts"], answer["error"]) == ("pending", 2, "invalid_data")


def test_staff_still_see_the_details_in_the_console(device, device_client, ingest_queue):
    message_id = _accept(device_client)
    letter = DeadLetterFactory(
        message_id=message_id,
        device_id=device.pk,
        error_class="django.db.utils.DataError",
        error_message=POSTGRES_TEXT,
    )
    staff = UserFactory()
    console = Client()
    console.force_login(staff)
    page = console.get(f"/console/failed/{letter.pk}/").content.decode()
    assert "django.db.utils.DataError" in page and "character varying(32)" in page


def test_a_processed_message_has_no_error(device, device_client, ingest_queue):
    message_id = _accept(device_client)
    IngestMessageFactory(
        message_id=message_id,
        device=device,
        status=IngestMessage.Status.PROCESSED,
        processed_at=timezone.now(),
    )
    assert device_client.get(f"/api/v1/ingest/{message_id}/").json()["error"] is None
