"""POST /api/v1/webhooks/<source>/: Standard Webhooks signatures, replays, and what is checked first."""

from __future__ import annotations

import base64
import json
import socket
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from standardwebhooks.webhooks import Webhook

from ingest.messages import message_decode
from ingest.models import IngestMessage, WebhookEvent, WebhookSource
from tests.broker import queue_depth, queued_messages
from tests.webhooks import TEST_SECRET, partner_signature, signed_headers, signed_webhook_post, webhook_post
from tests.workers import wait_until, worker_thread

pytestmark = pytest.mark.django_db

OTHER_SECRET = "whsec_" + base64.b64encode(b"another partner's 32-byte key!!!").decode()
BODY = b'{"type": "visit.completed", "visit": 42}'


@pytest.fixture
def webhook_source():
    return WebhookSource.objects.create(name="carelink", secret=TEST_SECRET)


def test_a_signed_webhook_is_queued_under_its_delivery_id(webhook_source, ingest_queue):
    headers = signed_headers(BODY, delivery_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")

    response = webhook_post(BODY, headers)

    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    message_id = response.json()["id"]
    [(properties, raw)] = queued_messages(ingest_queue.queue)
    message = message_decode(raw)
    assert (message.source, message.event_type, message.payload) == (
        "carelink",
        "visit.completed",
        {"type": "visit.completed", "visit": 42},
    )
    assert str(message.message_id) == message_id == properties.message_id


def test_a_partner_signing_with_the_standardwebhooks_package_is_accepted(webhook_source, ingest_queue):
    """Interoperability: the reference library's signature verifies here."""
    signed_at = datetime.now(tz=UTC)
    signature = Webhook(TEST_SECRET).sign("msg_reference", signed_at, BODY.decode())
    headers = {
        "HTTP_WEBHOOK_ID": "msg_reference",
        "HTTP_WEBHOOK_TIMESTAMP": str(int(signed_at.timestamp())),
        "HTTP_WEBHOOK_SIGNATURE": signature,
    }
    assert webhook_post(BODY, headers).status_code == 202
    assert queue_depth(ingest_queue.queue) == 1


def test_our_signature_verifies_with_the_standardwebhooks_package():
    from ingest.services.webhooks import webhook_sign

    signature = webhook_sign(secret=TEST_SECRET, delivery_id="msg_1", timestamp=int(time.time()), body=BODY)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": signature,
    }
    assert Webhook(TEST_SECRET).verify(BODY, headers) == json.loads(BODY)


def test_webhook_event_type_falls_back_to_the_header_then_unknown(webhook_source, ingest_queue):
    body = b'{"visit": 1}'
    assert signed_webhook_post(body, HTTP_X_EVENT_TYPE="visit.started").status_code == 202
    assert signed_webhook_post(body).status_code == 202
    types = [message_decode(raw).event_type for _, raw in queued_messages(ingest_queue.queue)]
    assert types == ["visit.started", "unknown"]


def test_an_event_type_header_the_database_cannot_store_is_a_400_naming_it(webhook_source, ingest_queue):
    response = signed_webhook_post(b'{"visit": 1}', HTTP_X_EVENT_TYPE="visit\x00started")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert list(response.json()["fields"]) == ["type"]
    assert queued_messages(ingest_queue.queue) == []


@pytest.mark.usefixtures("committed_db")
def test_the_same_signed_delivery_posted_three_times_is_stored_once(webhook_source, ingest_queue):
    headers = signed_headers(BODY, delivery_id="msg_replayed")

    # Sent again before the worker stored the first copy: queued again (the first copy
    # may never have reached the broker), and the ledger absorbs the copies.
    answers = [webhook_post(BODY, headers) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [202, 202, 202]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert queue_depth(ingest_queue.queue) == 3
    # One message per batch: the copies meet the ledger, not the in-batch de-duplication.
    with worker_thread(ingest_queue, batch_size=1) as worker:
        assert wait_until(lambda: worker.totals.messages == 3)
    assert WebhookEvent.objects.count() == 1
    assert worker.totals.duplicates_skipped == 2

    # Sent again once stored (also re-signed with a new timestamp, as a partner's retry
    # is): nothing is queued and the answer says so.
    for again in (headers, signed_headers(BODY, delivery_id="msg_replayed")):
        answer = webhook_post(BODY, again)
        assert answer.status_code == 202
        assert answer.json() == {"status": "already_processed", "id": answers[0].json()["id"]}
    assert queue_depth(ingest_queue.queue) == 0
    assert WebhookEvent.objects.count() == 1


def test_a_broker_outage_is_a_503_and_the_retry_is_queued(webhook_source, ingest_queue, settings):
    from ingest.broker.publisher import publisher_reset

    headers = signed_headers(BODY, delivery_id="msg_during_outage")
    port = settings.RABBITMQ_PORT
    settings.RABBITMQ_PORT = 1
    publisher_reset()
    try:
        response = webhook_post(BODY, headers)
    finally:
        settings.RABBITMQ_PORT = port
        publisher_reset()
    assert response.status_code == 503
    assert IngestMessage.objects.count() == 0  # the accept path writes nothing to the database
    assert webhook_post(BODY, headers).json()["status"] == "queued"
    assert queue_depth(ingest_queue.queue) == 1


def test_different_deliveries_and_sources_get_different_message_ids(webhook_source, ingest_queue):
    WebhookSource.objects.create(name="homecare", secret=TEST_SECRET)
    ids = [
        webhook_post(BODY, signed_headers(BODY, delivery_id="msg_1")).json()["id"],
        webhook_post(BODY, signed_headers(BODY, delivery_id="msg_2")).json()["id"],
        webhook_post(BODY, signed_headers(BODY, delivery_id="msg_1"), source="homecare").json()["id"],
    ]
    assert len(set(ids)) == 3
    assert queue_depth(ingest_queue.queue) == 3


# Offsets a few seconds clear of the 300 s edge: the header holds whole seconds, so
# int(now) + 301 can be under 300.5 s ahead by the time the server reads it.
@pytest.mark.parametrize(
    ("offset", "status"), [(-305, 401), (305, 401), (-3600, 401), (-295, 202), (295, 202)]
)
def test_a_timestamp_outside_five_minutes_is_refused(webhook_source, ingest_queue, offset, status):
    headers = signed_headers(BODY, timestamp=int(time.time()) + offset)

    response = webhook_post(BODY, headers)

    assert response.status_code == status
    if status == 401:
        assert response.json()["code"] == "invalid_signature"
        assert "webhook-timestamp" in response.json()["fields"]
        assert queue_depth(ingest_queue.queue) == 0


def test_an_unknown_source_and_a_bad_signature_get_the_same_answer(webhook_source, ingest_queue):
    WebhookSource.objects.create(name="disabled", secret=TEST_SECRET, is_enabled=False)
    answers = {
        "unknown source": webhook_post(BODY, signed_headers(BODY), source="nobody"),
        "disabled source": webhook_post(BODY, signed_headers(BODY), source="disabled"),
        "wrong secret": webhook_post(BODY, signed_headers(BODY, secret=OTHER_SECRET)),
    }
    shapes = {name: (answer.status_code, answer.content) for name, answer in answers.items()}
    assert len(set(shapes.values())) == 1, shapes
    assert answers["unknown source"].status_code == 401
    assert queue_depth(ingest_queue.queue) == 0


def _right_signature(headers: dict) -> str:
    return headers["HTTP_WEBHOOK_SIGNATURE"].removeprefix("v1,")


def _last_byte_flipped(encoded: str) -> str:
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _last_character_changed(encoded: str) -> str:
    # The last character before the padding: the one a prefix comparison would never see.
    index = len(encoded.rstrip("=")) - 1
    replacement = "A" if encoded[index] != "A" else "B"
    return encoded[:index] + replacement + encoded[index + 1 :]


NEAR_MISSES = {
    "last byte wrong": lambda right: f"v1,{_last_byte_flipped(right)}",
    "last character wrong": lambda right: f"v1,{_last_character_changed(right)}",
    "truncated to 8 characters": lambda right: f"v1,{right[:8]}",
    "truncated by one byte": lambda right: f"v1,{base64.b64encode(base64.b64decode(right)[:-1]).decode()}",
    "padding dropped": lambda right: f"v1,{right.rstrip('=')}",
    "extra byte": lambda right: f"v1,{base64.b64encode(base64.b64decode(right) + b'x').decode()}",
    "empty signature": lambda right: "v1,",
    "empty header": lambda right: "",
    "other version": lambda right: f"v2,{right}",
    "asymmetric version": lambda right: f"v1a,{right}",
    "hex instead of base64": lambda right: f"v1,{base64.b64decode(right).hex()}",
    "no version": lambda right: right,
}


@pytest.mark.parametrize("near_miss", NEAR_MISSES, ids=list(NEAR_MISSES))
def test_a_near_miss_signature_is_refused(webhook_source, ingest_queue, near_miss):
    headers = signed_headers(BODY)
    headers["HTTP_WEBHOOK_SIGNATURE"] = NEAR_MISSES[near_miss](_right_signature(headers))

    response = webhook_post(BODY, headers)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"
    assert queue_depth(ingest_queue.queue) == 0


@pytest.mark.parametrize("changed", ["body", "id", "timestamp"])
def test_a_signature_over_other_content_is_refused(webhook_source, ingest_queue, changed):
    now = int(time.time())
    headers = signed_headers(BODY, delivery_id="msg_signed", timestamp=now)
    body = BODY
    if changed == "body":
        body = BODY.replace(b"42", b"43")
    elif changed == "id":
        headers["HTTP_WEBHOOK_ID"] = "msg_other"
    else:
        headers["HTTP_WEBHOOK_TIMESTAMP"] = str(now - 1)
    assert webhook_post(body, headers).status_code == 401
    assert queue_depth(ingest_queue.queue) == 0


def test_one_matching_signature_among_several_is_enough(webhook_source, ingest_queue):
    """Key rotation: the partner signs with its old and new key until both sides switched."""
    headers = signed_headers(BODY, secret=OTHER_SECRET)
    wrong = headers["HTTP_WEBHOOK_SIGNATURE"]
    right = partner_signature(
        secret=TEST_SECRET,
        delivery_id=headers["HTTP_WEBHOOK_ID"],
        timestamp=int(headers["HTTP_WEBHOOK_TIMESTAMP"]),
        body=BODY,
    )
    headers["HTTP_WEBHOOK_SIGNATURE"] = f"v1a,c2lnbmVk {wrong} {right}"
    assert webhook_post(BODY, headers).status_code == 202


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("HTTP_WEBHOOK_SIGNATURE", "v1,\u00e9\u00e9\u00e9="),
        ("HTTP_WEBHOOK_ID", "msg_\u00ff"),
        ("HTTP_WEBHOOK_TIMESTAMP", "\u00b2\u00b2"),
        ("HTTP_WEBHOOK_ID", "msg with spaces"),
        ("HTTP_WEBHOOK_ID", "x" * 256),
        ("HTTP_WEBHOOK_TIMESTAMP", "1.7e9"),
        ("HTTP_WEBHOOK_TIMESTAMP", "-5"),
        ("HTTP_WEBHOOK_SIGNATURE", " ".join(["v1,AAAA"] * 11)),
    ],
)
def test_a_malformed_header_is_a_401_naming_it(webhook_source, ingest_queue, header, value):
    headers = signed_headers(BODY)
    headers[header] = value

    response = webhook_post(BODY, headers)

    assert response.status_code == 401
    named = header.removeprefix("HTTP_").lower().replace("_", "-")
    assert list(response.json()["fields"]) == [named]


@pytest.mark.parametrize("missing", ["HTTP_WEBHOOK_ID", "HTTP_WEBHOOK_TIMESTAMP", "HTTP_WEBHOOK_SIGNATURE"])
def test_a_missing_header_is_a_401_naming_it(webhook_source, missing):
    headers = signed_headers(BODY)
    del headers[missing]
    response = webhook_post(BODY, headers)
    assert response.status_code == 401
    assert list(response.json()["fields"]) == [missing.removeprefix("HTTP_").lower().replace("_", "-")]


@pytest.mark.parametrize("legacy_signature", ["sha256=" + "0" * 64, "sha256=\u00e9\u00ff"])
def test_the_former_x_signature_is_refused_with_a_pointer_to_the_new_scheme(
    webhook_source, ingest_queue, legacy_signature
):
    """Non-ASCII bytes in a signature header are a 401, not an unauthenticated 500."""
    response = webhook_post(BODY, {"HTTP_X_SIGNATURE": legacy_signature})
    assert response.status_code == 401
    assert "Standard Webhooks" in response.json()["message"]
    assert queue_depth(ingest_queue.queue) == 0


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b"\xff\xfe{}"])
def test_a_signed_body_that_is_not_a_json_object_is_a_400(webhook_source, body, ingest_queue):
    response = signed_webhook_post(body)
    assert response.status_code == 400
    assert queue_depth(ingest_queue.queue) == 0


def test_a_webhook_body_with_nul_is_refused_before_queueing(webhook_source, ingest_queue):
    response = signed_webhook_post(b'{"type": "x", "note": "a\\u0000b"}')
    assert response.status_code == 400
    assert queue_depth(ingest_queue.queue) == 0


def test_a_webhook_over_the_limit_is_a_413(webhook_source, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 10
    assert signed_webhook_post(b'{"type": "much too long"}').status_code == 413


def test_a_content_length_that_is_not_a_number_is_a_400(webhook_source):
    response = signed_webhook_post(BODY, CONTENT_LENGTH="12\u00b2")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


# --- over a real socket: what is answered before the body arrives ---------------------


def _raw_post(live_server, path: str, headers: dict[str, str], *, timeout: float = 8.0) -> tuple[int, float]:
    """Send only the request head (no body at all); return the status and how long the answer took."""
    url = urlsplit(live_server.url)
    head = f"POST {path} HTTP/1.1\r\nHost: {url.hostname}\r\nContent-Type: application/json\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as client:
        started = time.monotonic()
        client.sendall(head.encode("latin-1"))
        answer = b""
        while b"\r\n" not in answer:
            chunk = client.recv(4096)  # socket.timeout here: the server is waiting on the body
            if not chunk:
                break
            answer += chunk
        elapsed = time.monotonic() - started
    return int(answer.split(b" ", 2)[1]), elapsed


def _signed_head(body_length: int, *, timestamp: int | None = None) -> dict[str, str]:
    signed = signed_headers(b"x" * body_length, timestamp=timestamp)
    return {
        "Content-Length": str(body_length),
        "webhook-id": signed["HTTP_WEBHOOK_ID"],
        "webhook-timestamp": signed["HTTP_WEBHOOK_TIMESTAMP"],
        "webhook-signature": signed["HTTP_WEBHOOK_SIGNATURE"],
    }


@pytest.mark.parametrize(
    ("case", "path", "head"),
    [
        ("unknown source", "/api/v1/webhooks/nobody/", lambda limit: _signed_head(limit)),
        ("no signature", "/api/v1/webhooks/carelink/", lambda limit: {"Content-Length": str(limit)}),
        (
            "expired timestamp",
            "/api/v1/webhooks/carelink/",
            lambda limit: _signed_head(limit, timestamp=int(time.time()) - 3600),
        ),
        ("over the limit", "/api/v1/webhooks/carelink/", lambda limit: _signed_head(limit + 1)),
        (
            "non-ASCII signature",
            "/api/v1/webhooks/carelink/",
            lambda limit: {**_signed_head(limit), "webhook-signature": "v1,\u00e9\u00ff"},
        ),
    ],
)
def test_a_refusal_is_answered_without_waiting_for_the_body(live_server, settings, case, path, head):
    """A client declaring a large body and sending none must not hold the server."""
    WebhookSource.objects.create(name="carelink", secret=TEST_SECRET)
    limit = settings.WEBHOOK_MAX_BODY_BYTES

    status, elapsed = _raw_post(live_server, path, head(limit))

    assert status == (413 if case == "over the limit" else 401)
    assert elapsed < 2.0, f"{case}: answered after {elapsed:.1f} s"


def test_a_secret_stored_before_the_standard_keeps_its_key(ingest_queue):
    """The migration rewrites a plain secret as whsec_<base64 of it>: the partner's key is unchanged."""
    from importlib import import_module

    from django.apps import apps

    migration = import_module("ingest.migrations.0003_webhook_secrets_standard_webhooks")
    WebhookSource.objects.create(name="carelink", secret="keep-me")
    WebhookSource.objects.create(name="current", secret=TEST_SECRET)

    migration.secrets_to_standard_webhooks(apps, None)

    assert WebhookSource.objects.get(name="current").secret == TEST_SECRET
    migrated = WebhookSource.objects.get(name="carelink").secret
    assert base64.b64decode(migrated.removeprefix("whsec_")) == b"keep-me"
    assert signed_webhook_post(BODY, secret=migrated).status_code == 202
    migration.secrets_to_plain(apps, None)
    assert WebhookSource.objects.get(name="carelink").secret == "keep-me"
