"""One failed message's page: bounded whatever the body, the record at fault, its device, its proof, edits reviewed."""

from __future__ import annotations

import html
import json
import re
import time
import uuid

import pytest
from django.test import Client
from django.utils import timezone

from ingest.messages import FailureEnvelope
from ingest.models import DeadLetter, DeadLetterAction
from tests.broker import queue_depth
from tests.dashboard.edits import VERSION, edit_confirm, edit_preview
from tests.factories import DeadLetterFactory, DeviceFactory, IngestMessageFactory, UserFactory

pytestmark = pytest.mark.django_db


def _page(client, dead: DeadLetter, status: int = 200) -> str:
    response = client.get(f"/console/failed/{dead.pk}/")
    assert response.status_code == status
    return html.unescape(response.content.decode())


def _text(content: str) -> str:
    """What the operator reads: the page without its tags."""
    return re.sub(r"<[^>]+>", "", content)


def _device_batch(message_id, *, device_id: int = 987_654, readings=(), events=(), **extra) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "kind": "device_batch",
            "message_id": str(message_id),
            "device_id": device_id,
            "accepted_at": timezone.now().isoformat(),
            "readings": list(readings),
            "events": list(events),
            **extra,
        }
    ).encode()


def _huge_letter(size: int = 3 * 1024 * 1024) -> DeadLetter:
    """A device batch of ``size`` bytes on one line (a huge event detail)."""
    message_id = uuid.uuid4()
    event = {"event_type": "door_open", "occurred_at": timezone.now().isoformat(), "detail": {"blob": ""}}
    skeleton = _device_batch(message_id, events=[event])
    event["detail"]["blob"] = "x" * (size - len(skeleton))
    body = _device_batch(message_id, events=[event])
    assert len(body) == size
    return DeadLetterFactory(message_id=message_id, body=body)


# --- robust pages ---------------------------------------------------------------------------


def test_a_3_mb_body_is_shown_truncated_with_a_download_and_the_page_stays_small(viewer_client):
    dead = _huge_letter()
    started = time.monotonic()
    response = viewer_client.get(f"/console/failed/{dead.pk}/")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert len(response.content) < 200_000
    assert elapsed < 2.0
    content = html.unescape(response.content.decode())
    assert "Showing the first 64.0\xa0KB of 3.0\xa0MB" in content
    assert f'href="/console/failed/{dead.pk}/body/"' in content


def test_a_body_over_the_edit_limit_cannot_be_edited_in_the_page(operator_client):
    content = _page(operator_client, _huge_letter(300 * 1024))
    assert "This body cannot be edited in the page (300.0\xa0KB; up to 256.0\xa0KB can be)" in content
    assert 'id="edit-body"' not in content


def test_a_body_shown_cut_short_is_edited_whole(operator_client, settings):
    settings.DEAD_LETTER_BODY_DISPLAY_BYTES = 100
    dead = DeadLetterFactory()
    response = operator_client.get(f"/console/failed/{dead.pk}/")
    payload = re.search(r'<pre id="payload" class="wrap">(.*?)</pre>', response.content.decode(), re.S)[1]
    edit_body = re.search(
        r'<textarea id="edit-body" name="body" rows="14">(.*?)</textarea>', response.content.decode(), re.S
    )[1]
    assert len(html.unescape(payload).encode()) <= 100
    assert json.loads(html.unescape(edit_body)) == json.loads(bytes(dead.body))


def test_the_download_is_the_exact_body_as_an_attachment(viewer_client):
    dead = _huge_letter()
    response = viewer_client.get(f"/console/failed/{dead.pk}/body/")
    assert response.status_code == 200
    assert response.content == bytes(dead.body)
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == f'attachment; filename="failed-message-{dead.message_id}.json"'

    binary = DeadLetterFactory(body=b"\x00\xff not json")
    response = viewer_client.get(f"/console/failed/{binary.pk}/body/")
    assert (response.content, response["Content-Type"]) == (b"\x00\xff not json", "application/octet-stream")
    assert response["Content-Disposition"].endswith('.bin"')


def test_the_download_needs_a_staff_user_allowed_to_read_failed_messages(client):
    dead = DeadLetterFactory()
    url = f"/console/failed/{dead.pk}/body/"
    assert client.get(url).status_code == 302  # to the login page
    for user in (UserFactory(username="no-role"), UserFactory(username="not-staff", is_staff=False)):
        other = Client()
        other.force_login(user)
        response = other.get(url)
        assert response.status_code == 403
        assert bytes(dead.body) not in response.content


def test_a_binary_body_over_the_limit_is_shown_escaped_in_part(viewer_client, settings):
    settings.DEAD_LETTER_BODY_DISPLAY_BYTES = 8
    content = _page(viewer_client, DeadLetterFactory(body=b"\x00\x01\xff and more bytes"))
    assert "binary, 18 bytes" in content
    assert "\\x00\\x01\\xff and" in content
    assert "more bytes" not in content


def test_a_character_cut_at_the_limit_is_left_out(viewer_client, settings):
    settings.DEAD_LETTER_BODY_DISPLAY_BYTES = 4
    content = _page(viewer_client, DeadLetterFactory(body="abcé and more".encode()))
    assert "Showing the first 3\xa0bytes" in content
    assert "binary," not in content


def test_the_traceback_appears_once_not_again_in_the_headers(viewer_client):
    """Regression: the headers table repeated the traceback (on one line, 40,930 px wide)."""
    traceback = 'Traceback (most recent call last):\n  File "worker.py"\nIntegrityError: unique-marker-1234'
    envelope = FailureEnvelope(error_class="IntegrityError", error_message="boom", traceback=traceback)
    dead = DeadLetterFactory(headers={"schema_version": 1, **envelope.to_headers()}, traceback=traceback)
    content = _page(viewer_client, dead)
    assert content.count("unique-marker-1234") == 1
    assert '"x-error-class": "IntegrityError"' in content


# --- the device ------------------------------------------------------------------------------


def test_the_device_is_shown_by_serial_and_a_missing_one_is_flagged(viewer_client):
    device = DeviceFactory(serial_no="VIT-0042")
    content = _page(viewer_client, DeadLetterFactory(device_id=device.id))
    assert f'<a href="/console/devices/{device.id}/"><strong>VIT-0042</strong></a>' in content
    assert "no longer exists" not in content

    content = _page(viewer_client, DeadLetterFactory(device_id=123))
    assert "device 123 no longer exists" in content


def test_the_list_shows_serials_and_flags_missing_devices(viewer_client):
    device = DeviceFactory(serial_no="VIT-0042")
    DeadLetterFactory(device_id=device.id)
    DeadLetterFactory(device_id=123)
    content = viewer_client.get("/console/failed/").content.decode()
    assert f'<a href="/console/devices/{device.id}/">VIT-0042</a>' in content
    assert "device 123 no longer exists" in content


# --- the record at fault ---------------------------------------------------------------------------


def _readings(count: int) -> list[dict]:
    now = timezone.now().isoformat()
    return [
        {"metric": "heart_rate", "value": 60 + n, "unit": "bpm", "measured_at": now} for n in range(count)
    ]


@pytest.mark.parametrize(
    ("error_message", "place"),
    [
        (
            "value too long for type character varying(32)\nCONTEXT:  COPY sensor_readings, line 3, column metric",
            "readings[2]",
        ),
        (
            "value too long for type character varying(32)\nCONTEXT:  COPY ingest_readings_staging, line 1",
            "readings[0]",
        ),
        (
            "malformed device_batch message: MalformedRecord(\"readings[3]: KeyError('measured_at')\")",
            "readings[3]",
        ),
        ("{'readings': {1: {'value': ['Must be a JSON number.']}}} at readings.1.value", "readings[1]"),
    ],
)
def test_the_record_named_by_the_error_is_shown(viewer_client, error_message, place):
    message_id = uuid.uuid4()
    dead = DeadLetterFactory(
        message_id=message_id,
        body=_device_batch(message_id, readings=_readings(4)),
        error_message=error_message,
    )
    content = _page(viewer_client, dead)
    assert f"record {place} failed: {error_message.splitlines()[0]}" in _text(content)
    assert content.count('class="failed-record"') == 1


def test_a_refused_event_row_is_matched_to_its_event(viewer_client):
    message_id = uuid.uuid4()
    now = timezone.now().isoformat()
    events = [
        {"event_type": "door_open", "severity": 1, "occurred_at": now},
        {"event_type": "sos", "severity": 7, "occurred_at": now},
    ]
    error = (
        'new row for relation "device_events" violates check constraint "device_events_severity_check"\n'
        "DETAIL:  Failing row contains (12, 5, sos, 7, 2026-11-24 10:00:00+00, {}, 2026-11-24 10:00:01+00)."
    )
    dead = DeadLetterFactory(
        message_id=message_id, body=_device_batch(message_id, events=events), error_message=error
    )
    assert "record events[1] failed: new row for relation" in _text(_page(viewer_client, dead))


def test_without_a_place_in_the_error_the_records_the_api_refuses_are_shown(viewer_client):
    message_id = uuid.uuid4()
    readings = _readings(3)
    readings[1]["metric"] = "Heart Rate"
    dead = DeadLetterFactory(
        message_id=message_id,
        body=_device_batch(message_id, readings=readings),
        error_message="DataError: boom",
    )
    content = _page(viewer_client, dead)
    assert "record readings[1] failed: metric: Must be a lower-case letter" in _text(content)
    assert "(from the ingest API's checks)" in content


def test_an_error_about_the_whole_message_names_no_record(viewer_client):
    dead = DeadLetterFactory()  # the device is not present: every record is fine
    assert "Which record failed" not in _page(viewer_client, dead)


# --- the proof ------------------------------------------------------------------------------------


def test_the_proof_shows_deliveries_storage_rows_and_duplicates(viewer_client):
    dead = DeadLetterFactory()
    assert "The ledger has no row for this message" in _page(viewer_client, dead)
    IngestMessageFactory(
        message_id=dead.message_id,
        status="processed",
        processed_at=timezone.now(),
        readings=3,
        events=1,
        failed_deliveries=5,
        duplicate_deliveries=2,
    )
    content = _page(viewer_client, dead)
    for proof in (
        'id="proof-deliveries">8<',
        'id="proof-failed">5<',
        'id="proof-stored">yes, once<',
        'id="proof-rows">3 readings, 1 event<',
        'id="proof-duplicates">2<',
        'id="proof-present">0 of 1<',  # the ledger says stored, the table says otherwise: shown as is
    ):
        assert proof in content


# --- edits reviewed against a diff -------------------------------------------------------------


def _edited(dead: DeadLetter, value: float = 71.5) -> dict:
    edited = json.loads(bytes(dead.body))
    edited["readings"][0]["value"] = value
    return edited


def test_an_edit_shows_its_diff_and_sends_nothing_until_confirmed(operator_client, ingest_queue):
    dead = DeadLetterFactory()
    response = edit_preview(operator_client, dead, _edited(dead), reason="typo in the value")
    assert response.status_code == 200
    content = html.unescape(response.content.decode())
    assert '<span class="diff-removed">-      "value": 70.0</span>' in content
    assert '<span class="diff-added">+      "value": 71.5</span>' in content
    dead.refresh_from_db()
    assert dead.status == DeadLetter.Status.DEAD
    assert queue_depth(ingest_queue.queue) == 0

    response = edit_confirm(
        operator_client, dead, _edited(dead), VERSION.search(content)[1], "typo in the value"
    )
    assert response.status_code == 302
    dead.refresh_from_db()
    assert dead.status == DeadLetter.Status.REQUEUED
    action = dead.actions.get(action=DeadLetterAction.Action.EDITED_AND_REQUEUED)
    assert '-      "value": 70.0' in action.body_diff and '+      "value": 71.5' in action.body_diff
    page = _page(operator_client, dead)
    assert "the diff confirmed" in page
    assert '<span class="diff-added">+      "value": 71.5</span>' in page


def test_an_edit_with_invalid_records_shows_the_field_errors_before_any_diff(operator_client, ingest_queue):
    dead = DeadLetterFactory()
    edited = _edited(dead)
    edited["readings"][0]["value"] = "seventy"
    response = edit_preview(operator_client, dead, edited)
    assert response.status_code == 400
    content = html.unescape(response.content.decode())
    assert "readings.0.value</code>: Must be a JSON number." in content
    assert "diff-added" not in content


@pytest.mark.parametrize("meanwhile", ["requeued", "died again", "edited by someone else"])
def test_confirming_a_stale_diff_is_refused(operator_client, ingest_queue, meanwhile):
    dead = DeadLetterFactory()
    version = VERSION.search(edit_preview(operator_client, dead, _edited(dead)).content.decode())[1]
    if meanwhile == "requeued":
        DeadLetter.objects.filter(pk=dead.pk).update(status=DeadLetter.Status.REQUEUED)
    elif meanwhile == "died again":
        DeadLetterAction.objects.create(
            dead_letter=dead, action=DeadLetterAction.Action.RECORDED, reason="again"
        )
    else:
        DeadLetter.objects.filter(pk=dead.pk).update(body=json.dumps(_edited(dead, 99.0)).encode())

    response = edit_confirm(operator_client, dead, _edited(dead), version)
    assert response.status_code == 302
    message = html.unescape(operator_client.get(response["Location"]).content.decode())
    expected = "is already requeued" if meanwhile == "requeued" else "changed after the diff was shown"
    assert expected in message
    assert queue_depth(ingest_queue.queue) == 0
    assert not DeadLetterAction.objects.filter(dead_letter=dead).exclude(action="recorded").exists()


def test_changing_the_edit_goes_back_to_the_form_with_what_was_typed(operator_client):
    dead = DeadLetterFactory()
    body = json.dumps(_edited(dead))
    response = operator_client.post(
        f"/console/failed/{dead.pk}/requeue/",
        {"edit": "1", "revise": "1", "body": body, "reason": "try again"},
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert html.escape(body) in content and 'value="try again"' in content


def test_a_viewer_can_neither_preview_nor_confirm_an_edit(viewer_client, ingest_queue):
    dead = DeadLetterFactory()
    assert edit_preview(viewer_client, dead, _edited(dead)).status_code == 403
    assert edit_confirm(viewer_client, dead, _edited(dead), "0" * 64).status_code == 403
    assert queue_depth(ingest_queue.queue) == 0
