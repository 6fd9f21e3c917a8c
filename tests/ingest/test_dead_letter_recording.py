"""Recording dead letters whatever their bytes, isolating what cannot be stored, and saying
so on the console when the dead-letter queue is not being recorded."""

from __future__ import annotations

import codecs
import json
import urllib.request
import uuid

import pika
import pytest
from django.db import connection
from django.test import Client

from ingest.broker.connection import open_connection
from ingest.messages import DEVICE_BATCH
from ingest.models import DeadLetter, DeadLetterAction
from ingest.selectors.dead_letters import dead_letter_queryset
from ingest.services.dead_letters import ESCAPED_BYTES, ESCAPED_TEXT
from tests.broker import publish_device_batch, publish_raw, queue_depth
from tests.factories import UserFactory, reading_record
from tests.workers import wait_until, worker_thread

pytestmark = pytest.mark.usefixtures("committed_db")

MISSING_DEVICE_ID = 987_654

# NUL bytes, invalid UTF-8, an encoded lone surrogate, NUL inside valid UTF-8 JSON.
BODIES_TEXT_CANNOT_HOLD = [
    b"\x00",
    b"\x00\x01binary\xff\xfe\x00 end",
    b"\xed\xa0\x80 an encoded lone surrogate",
    b'{"schema_version": 1, "kind": "device_batch", "note": "nul \x00 inside"}',
    b'{"schema_version": 1, "kind": "nul\\u0000kind"}',
]
AWKWARD_HEADERS = {
    "x-nul-text": "before \x00 after",
    "x-raw-bytes": b"\xff\x00\xfe",
    "x-utf8-bytes": "caf\u00e9".encode(),
    "x-nested": {"list": ["a\x00b", 1, True]},
}


def _publish_with_headers(queue: str, body: bytes, headers: dict) -> str:
    message_id = str(uuid.uuid4())
    broker = open_connection()
    try:
        channel = broker.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            exchange="",
            routing_key=queue,
            body=body,
            properties=pika.BasicProperties(
                message_id=message_id, type=DEVICE_BATCH, delivery_mode=2, headers=headers
            ),
            mandatory=True,
        )
    finally:
        broker.close()
    return message_id


def _headers_restored(value):
    """The inverse of how the recorder stores what jsonb cannot hold (tagged, escaped)."""
    if isinstance(value, dict):
        if set(value) == {ESCAPED_TEXT}:
            return value[ESCAPED_TEXT].encode("ascii").decode("unicode_escape")
        if set(value) == {ESCAPED_BYTES}:
            return codecs.escape_decode(value[ESCAPED_BYTES].encode("ascii"))[0]
        return {key: _headers_restored(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_headers_restored(item) for item in value]
    return value


def test_any_bytes_are_recorded_byte_for_byte_and_never_block_the_letters_behind(ingest_queue):
    sent = {
        _publish_with_headers(ingest_queue.queue, body, AWKWARD_HEADERS): body
        for body in BODIES_TEXT_CANNOT_HOLD
    }
    # Ordinary poison behind them: one that is retried first, one undecodable at once.
    poison = publish_device_batch(device_id=MISSING_DEVICE_ID, readings=[reading_record()])
    sent[str(poison.message_id)] = poison.to_body()
    sent[publish_raw(b"garbage")] = b"garbage"

    with worker_thread(ingest_queue) as worker:
        assert wait_until(lambda: DeadLetter.objects.count() == len(sent), timeout=30)
        assert worker.totals.dead_letters_recorded == len(sent)

    # Stopped: anything left unacked would be back on the queue as ready now.
    assert queue_depth(ingest_queue.dead_queue) == 0
    for message_id, body in sent.items():
        dead = DeadLetter.objects.get(message_id=message_id)
        assert bytes(dead.body) == body
        assert dead.recording_error == ""
        assert dead.actions.get().action == DeadLetterAction.Action.RECORDED
        assert "\x00" not in dead.body_text
    for message_id in list(sent)[: len(BODIES_TEXT_CANNOT_HOLD)]:
        headers = DeadLetter.objects.get(message_id=message_id).headers
        restored = _headers_restored(headers)
        assert restored["x-nul-text"] == AWKWARD_HEADERS["x-nul-text"]
        assert restored["x-raw-bytes"] == AWKWARD_HEADERS["x-raw-bytes"]
        assert restored["x-utf8-bytes"] == "caf\u00e9"
        assert restored["x-nested"] == AWKWARD_HEADERS["x-nested"]
        assert restored["x-error-class"].endswith("UndecodableMessage")


def test_a_binary_body_is_searchable_by_its_text_parts(ingest_queue):
    publish_raw(b"\x00\xffpatient-7731\x00")
    with worker_thread(ingest_queue):
        assert wait_until(lambda: DeadLetter.objects.count() == 1)
    assert dead_letter_queryset({"q": "patient-7731"}).count() == 1


@pytest.fixture
def deadletter_refusing_marker():
    """A real database refusal the recorder cannot foresee: rows whose headers carry
    ``x-refuse-me`` violate a check constraint (added for the test, dropped after)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE ingest_deadletter ADD CONSTRAINT test_refuse_marker "
            "CHECK (NOT (headers ? 'x-refuse-me'))"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE ingest_deadletter DROP CONSTRAINT IF EXISTS test_refuse_marker")


def test_a_letter_the_database_refuses_is_isolated_kept_visible_and_the_others_recorded(
    ingest_queue, deadletter_refusing_marker
):
    refused_body = b"\x00 refused by the database"
    refused = _publish_with_headers(ingest_queue.queue, refused_body, {"x-refuse-me": "yes"})
    others = [publish_raw(f"garbage {n}".encode()) for n in range(3)]

    with worker_thread(ingest_queue):
        assert wait_until(lambda: DeadLetter.objects.count() == 4, timeout=30)

    assert queue_depth(ingest_queue.dead_queue) == 0
    isolated = DeadLetter.objects.get(message_id=refused)
    assert bytes(isolated.body) == refused_body
    assert isolated.status == DeadLetter.Status.DEAD
    assert "test_refuse_marker" in isolated.recording_error
    assert "x-refuse-me" in json.dumps(isolated.headers)
    assert isolated.error_class.endswith("UndecodableMessage")
    assert DeadLetter.objects.filter(message_id__in=others, recording_error="").count() == 3


# --- the console's health signal ----------------------------------------------------------


@pytest.fixture
def console(settings):
    """A console viewer, the stall window short, and unacked counts when the management API answers."""
    settings.DEAD_LETTER_RECORDING_STALL_SECONDS = 2
    management = settings.RABBITMQ_MANAGEMENT_URL or "http://127.0.0.1:15672"
    try:
        urllib.request.urlopen(management, timeout=2)
        settings.RABBITMQ_MANAGEMENT_URL = management
    except OSError:
        settings.RABBITMQ_MANAGEMENT_URL = ""
    client = Client()
    client.force_login(UserFactory(role="Console viewers"))
    return client


def _panel(console) -> tuple[str | None, int | None, str]:
    response = console.get("/console/overview/panel/")
    assert response.status_code == 200
    stall = [
        banner for banner in response.context["health_banners"] if banner.kind == "dead-letters-unrecorded"
    ]
    return (
        stall[0].detail if stall else None,
        response.context["dead_letter_queue_waiting"],
        response.content.decode(),
    )


@pytest.fixture
def deadletter_refusing_everything():
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE ingest_deadletter ADD CONSTRAINT test_refuse_all CHECK (false) NOT VALID")
    yield
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE ingest_deadletter DROP CONSTRAINT IF EXISTS test_refuse_all")


def test_the_overview_raises_an_alarm_while_a_recorder_is_stuck_and_clears_it_once_recorded(
    ingest_queue, console, settings, deadletter_refusing_everything
):
    for n in range(3):
        publish_raw(f"garbage {n}".encode())
    with worker_thread(ingest_queue):
        assert wait_until(lambda: _panel(console)[0] is not None, timeout=20)
        stall, _, content = _panel(console)
        assert "holds 3 dead letters" in stall and "test_refuse_all" in stall
        assert 'data-kind="dead-letters-unrecorded"' in content
        assert DeadLetter.objects.count() == 0
        if settings.RABBITMQ_MANAGEMENT_URL:  # unacked, not ready: counted all the same
            assert wait_until(lambda: _panel(console)[1] == 3, timeout=20)

        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE ingest_deadletter DROP CONSTRAINT test_refuse_all")
        assert wait_until(lambda: DeadLetter.objects.count() == 3, timeout=40)
        assert wait_until(lambda: _panel(console)[0] is None, timeout=20)
        assert 'data-kind="dead-letters-unrecorded"' not in _panel(console)[2]
    assert queue_depth(ingest_queue.dead_queue) == 0


def test_the_overview_raises_an_alarm_when_letters_wait_and_no_worker_records_them(ingest_queue, console):
    # Nothing waits: no alarm, worker or not (once the management API's sample is fresh).
    assert wait_until(lambda: _panel(console)[0] is None, timeout=15)
    _publish_with_headers(ingest_queue.dead_queue, b"left on the dead-letter queue", {})
    assert wait_until(lambda: _panel(console)[0] is not None, timeout=10)
    stall, waiting, _ = _panel(console)
    assert "no worker has recorded any" in stall
    assert waiting == 1

    with worker_thread(ingest_queue):
        assert wait_until(lambda: DeadLetter.objects.count() == 1)
        assert wait_until(lambda: _panel(console)[0] is None, timeout=10)
        assert _panel(console)[1] == 0
