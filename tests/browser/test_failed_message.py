"""A failed message in a real browser: a page that stays in the window, edits proven exactly once."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from ingest.messages import FailureEnvelope
from ingest.models import DeadLetter, IngestMessage, SensorReading
from ingest.services.dead_letters import dead_letter_requeue
from tests.broker import publish_device_batch, publish_raw
from tests.browser.conftest import log_in
from tests.factories import DeadLetterFactory, DeviceFactory, UserFactory
from tests.workers import wait_until, worker_thread

pytestmark = pytest.mark.usefixtures("committed_db")

OPERATORS = "Console operators"
VIEWERS = "Console viewers"
MB = 1024 * 1024


def _fits_the_window(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def _huge_failed_message() -> DeadLetter:
    """3 MB on one line, with a traceback of 40,000 characters on one line in its headers too."""
    message_id = uuid.uuid4()
    blob = "0123456789abcdef" * (3 * MB // 16)
    body = json.dumps(
        {
            "schema_version": 1,
            "kind": "device_batch",
            "message_id": str(message_id),
            "device_id": 4242,
            "accepted_at": timezone.now().isoformat(),
            "readings": [],
            "events": [
                {
                    "event_type": "door_open",
                    "occurred_at": timezone.now().isoformat(),
                    "detail": {"blob": blob},
                }
            ],
        }
    ).encode()
    traceback = "Traceback (most recent call last): " + "frame-" * 6_000 + "DataError: traceback-end-marker"
    envelope = FailureEnvelope(
        failures=(timezone.now(),), error_class="DataError", error_message="boom", traceback=traceback
    )
    return DeadLetterFactory(
        message_id=message_id,
        device_id=4242,
        body=body,
        headers={"schema_version": 1, **envelope.to_headers()},
        traceback=traceback,
        error_message="value too long for type character varying(32)",
    )


def test_a_3_mb_message_with_a_one_line_traceback_stays_in_the_window_and_downloads_whole(
    live_server, page, screenshot
):
    UserFactory(username="victor", role=VIEWERS)
    dead = _huge_failed_message()
    log_in(page, live_server.url, "victor")

    started = time.monotonic()
    response = page.goto(f"{live_server.url}/console/failed/{dead.pk}/")
    loaded = time.monotonic() - started
    html_bytes = len(response.body())
    assert html_bytes < 200_000, f"the page is {html_bytes} bytes"
    assert loaded < 5, f"the page took {loaded:.1f} s"
    expect(page.locator("#payload-truncated")).to_have_text(
        "Showing the first 64.0\xa0KB of 3.0\xa0MB: download the whole body to read it all."
    )
    expect(page.locator("#device-missing")).to_have_text("device 4242 no longer exists")
    assert _fits_the_window(page)
    # The traceback is shown once, in its own place: not again among the headers.
    assert page.locator("main").inner_text().count("traceback-end-marker") == 1
    expect(page.locator("#traceback")).to_contain_text("traceback-end-marker")
    expect(page.locator("#headers")).not_to_contain_text("traceback-end-marker")
    screenshot(page, "failed-message-huge")

    with page.expect_download() as download_info:
        page.click("#payload-download")
    download = download_info.value
    assert download.suggested_filename == f"failed-message-{dead.message_id}.json"
    assert Path(download.path()).read_bytes() == bytes(dead.body)

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert _fits_the_window(page)
    screenshot(page, "failed-message-huge-phone")


def test_the_record_at_fault_is_pointed_out(live_server, page):
    UserFactory(username="victor", role=VIEWERS)
    message_id = uuid.uuid4()
    now = timezone.now().isoformat()
    readings = [
        {"metric": "heart_rate", "value": 60 + n, "unit": "bpm", "measured_at": now} for n in range(4)
    ]
    readings[2]["metric"] = "m" * 40
    body = json.dumps(
        {
            "schema_version": 1,
            "kind": "device_batch",
            "message_id": str(message_id),
            "device_id": 5,
            "accepted_at": now,
            "readings": readings,
            "events": [],
        }
    ).encode()
    dead = DeadLetterFactory(
        message_id=message_id,
        body=body,
        error_class="django.db.utils.DataError",
        error_message="value too long for type character varying(32)\nCONTEXT:  COPY sensor_readings, line 3, column metric",
    )
    log_in(page, live_server.url, "victor")
    page.goto(f"{live_server.url}/console/failed/{dead.pk}/")
    record = page.locator(".failed-record")
    expect(record).to_have_count(1)
    expect(record).to_contain_text("record readings[2] failed: value too long for type character varying(32)")
    expect(record.locator("pre")).to_contain_text("m" * 40)


def test_an_edit_is_reviewed_as_a_diff_then_stored_once_with_its_proof(
    live_server, page, screenshot, ingest_queue
):
    UserFactory(username="olivia", role=OPERATORS)
    # A real failure: a reading of a device not registered yet, dead-lettered by the worker.
    reading = {"metric": "heart_rate", "value": 70.0, "unit": "bpm", "measured_at": timezone.now()}
    poison = publish_device_batch(device_id=987_655, readings=[reading])
    with worker_thread(ingest_queue):
        assert wait_until(lambda: DeadLetter.objects.filter(message_id=poison.message_id).exists())
    dead = DeadLetter.objects.get(message_id=poison.message_id)

    log_in(page, live_server.url, "olivia")
    page.click("text=Failed messages")
    row = page.locator("tr", has_text=str(dead.message_id)[:10])
    expect(row).to_contain_text("device 987655 no longer exists")
    row.locator(f"a[href='/console/failed/{dead.pk}/']").click()
    expect(page.locator("#device-missing")).to_have_text("device 987655 no longer exists")
    expect(page.locator("#proof-stored")).to_have_text("no")
    expect(page.locator("#proof-failed")).to_have_text("4")

    DeviceFactory(id=987_655, serial_no="VIT-0655")
    page.reload()
    expect(page.locator("#message-device a")).to_have_text("VIT-0655")
    body = json.loads(page.locator("#edit-body").input_value())
    body["readings"][0]["value"] = 72.0
    page.fill("#edit-body", json.dumps(body, indent=2))
    page.fill("#edit-form input[name=reason]", "device registered; corrected the reading")
    page.click("#edit-requeue")

    # Nothing is sent before the operator saw what changes.
    expect(page.locator("h1")).to_contain_text("Review the edit")
    expect(page.locator("#edit-diff .diff-removed")).to_have_text('-      "value": 70.0')
    expect(page.locator("#edit-diff .diff-added")).to_have_text('+      "value": 72.0')
    assert DeadLetter.objects.get(pk=dead.pk).status == "dead"
    screenshot(page, "failed-message-edit-diff")
    page.click("#confirm-requeue")
    expect(page.locator(".messages")).to_contain_text("requeued (the broker confirmed it)")

    with worker_thread(ingest_queue):
        assert wait_until(lambda: IngestMessage.objects.get(message_id=dead.message_id).status == "processed")
        # The same message delivered again (a duplicate publish): the ledger absorbs it.
        publish_raw(bytes(DeadLetter.objects.get(pk=dead.pk).body), str(dead.message_id))
        assert wait_until(
            lambda: IngestMessage.objects.get(message_id=dead.message_id).duplicate_deliveries == 1
        )
    assert list(SensorReading.objects.filter(device_id=987_655).values_list("value", flat=True)) == [72.0]

    page.reload()
    expect(page.locator("#proof-stored")).to_have_text("yes, once")
    expect(page.locator("#proof-rows")).to_have_text("1 reading, 0 events")
    expect(page.locator("#proof-duplicates")).to_have_text("1")
    expect(page.locator("#proof-deliveries")).to_have_text("6")  # 4 failed, 1 stored, 1 absorbed
    expect(page.locator("#proof-present")).to_have_text("1 of 1")
    edit = page.locator("#audit-trail tr", has_text="Edited and requeued")
    expect(edit).to_contain_text("device registered; corrected the reading")
    expect(edit.locator(".diff-added")).to_have_text('+      "value": 72.0')
    assert _fits_the_window(page)
    screenshot(page, "failed-message-proof")


def test_confirming_a_diff_after_someone_else_requeued_the_message_is_refused(
    live_server, page, ingest_queue
):
    operator = UserFactory(username="olivia", role=OPERATORS)
    dead = DeadLetterFactory()
    log_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/console/failed/{dead.pk}/")
    body = json.loads(page.locator("#edit-body").input_value())
    body["readings"][0]["value"] = 71.0
    page.fill("#edit-body", json.dumps(body))
    page.fill("#edit-form input[name=reason]", "typo")
    page.click("#edit-requeue")
    expect(page.locator("#edit-diff .diff-added")).to_have_text('+      "value": 71.0')

    dead_letter_requeue(dead_letter_id=dead.pk, actor=operator, reason="requeued as it was, meanwhile")
    page.click("#confirm-requeue")
    expect(page.locator(".messages")).to_contain_text("is already requeued")
    assert not DeadLetter.objects.get(pk=dead.pk).actions.filter(action="edited_requeued").exists()


def test_a_user_without_the_right_cannot_download_a_body(live_server, page):
    UserFactory(username="nobody")  # staff, but in no console role
    dead = DeadLetterFactory()
    log_in(page, live_server.url, "nobody")
    response = page.goto(f"{live_server.url}/console/failed/{dead.pk}/body/")
    assert response.status == 403
    expect(page.locator("body")).not_to_contain_text("heart_rate")
