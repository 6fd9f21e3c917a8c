"""Partner systems pushing notifications, signed with the Standard Webhooks scheme.

A delivery carries three headers (https://www.standardwebhooks.com/):

* ``webhook-id``: the delivery's id, the same on every retry of the same notification;
* ``webhook-timestamp``: when it was signed, integer Unix seconds;
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, or
  several such entries separated by spaces (one per key while a partner rotates keys).

Replays are refused twice over: a timestamp outside the tolerance is refused, and within
it the id becomes the pipeline message id, so the ledger stores a repeated delivery once.

The order of the checks is part of the contract: everything that can be checked without
the body (the headers, the timestamp, the source) is checked before the body is read, so
that an unauthenticated client cannot make the server wait on a slow body. An unknown or
disabled source and a wrong signature get the same answer: source names are not
enumerable through the answers.

The ``standardwebhooks`` package implements the same scheme, but it cannot check the
headers apart from the body, and it lets malformed headers escape as ``ValueError`` /
``UnicodeDecodeError`` (a 500) and accepts lenient base64; this module is the small,
strict verifier, and the tests sign with that package to prove interoperability.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from core.errors import ApplicationError
from ingest.json_input import JsonInputError, json_parse, json_value_problem, text_problem
from ingest.messages import WebhookMessage
from ingest.models import WebhookSource
from ingest.services.ingestion import webhook_event_accept

logger = logging.getLogger(__name__)

EVENT_TYPE_MAX_LENGTH = 64
SECRET_PREFIX = "whsec_"
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64
SIGNATURE_VERSION = "v1"
SIGNATURES_MAX = 10  # entries in one webhook-signature header: bounds the work per request
DELIVERY_ID_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII, no spaces
TIMESTAMP_PATTERN = re.compile(r"[0-9]{1,12}")
# uuid5(namespace, "<source>.<webhook-id>"): a source name is a slug, so it holds no dot.
WEBHOOK_NAMESPACE = uuid.UUID("9d3f7c2e-6a41-4b8e-a1f5-0c7d2b9e4f63")

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
HEADER_LEGACY_SIGNATURE = "X-Signature"
NOT_VERIFIED = "The webhook signature does not verify for this source."


class InvalidWebhookSecret(ValueError):
    """A stored or entered secret is not ``whsec_<base64>``."""


def webhook_secret_key(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_<base64>`` secret (base64 padding optional)."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidWebhookSecret(f"The secret must start with {SECRET_PREFIX!r}.")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidWebhookSecret(f"After {SECRET_PREFIX!r} the secret must be base64.") from error
    if not key:
        raise InvalidWebhookSecret("The secret is empty.")
    return key


def webhook_secret_validate(secret: str) -> None:
    """What a new secret must be: ``whsec_`` and the base64 of 24 to 64 random bytes."""
    key = webhook_secret_key(secret)
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise InvalidWebhookSecret(
            f"The secret must encode {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes; it encodes {len(key)}."
        )


def webhook_sign(*, secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` entry a sender computes: ``v1,<base64 HMAC-SHA256>``."""
    digest = _signature_digest(webhook_secret_key(secret), delivery_id, str(timestamp), body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def webhook_message_id(*, source_name: str, delivery_id: str) -> uuid.UUID:
    """The pipeline message id of a delivery: the same for every retry of it."""
    return uuid.uuid5(WEBHOOK_NAMESPACE, f"{source_name}.{delivery_id}")


def _signature_digest(key: bytes, delivery_id: str, timestamp: str, body: bytes) -> bytes:
    # The raw body bytes are signed, never a decoded and re-encoded copy of them.
    return hmac.new(key, f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


@dataclass(frozen=True)
class SignedHeaders:
    """The Standard Webhooks headers of one delivery, checked for form and freshness."""

    delivery_id: str
    timestamp: str
    signatures: tuple[bytes, ...]  # the decoded v1 entries


def _refused(message: str, *, header: str) -> ApplicationError:
    return ApplicationError(message, code="invalid_signature", fields={header: [message]})


def _header_text(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        if headers.get(HEADER_LEGACY_SIGNATURE) is not None:
            raise _refused(
                f"{HEADER_LEGACY_SIGNATURE} is no longer accepted: sign deliveries with the "
                "Standard Webhooks headers webhook-id, webhook-timestamp and webhook-signature.",
                header=name,
            )
        raise _refused(f"The {name} header is required (Standard Webhooks).", header=name)
    if not value.isascii():
        # WSGI hands headers over as latin-1 text: anything outside ASCII cannot be ours.
        raise _refused(f"The {name} header must be ASCII.", header=name)
    return value.strip()


def _signature_entries(header: str) -> tuple[bytes, ...]:
    """The v1 signatures of the header; other versions (e.g. ``v1a``) are skipped."""
    entries = header.split()
    if len(entries) > SIGNATURES_MAX:
        raise _refused(f"At most {SIGNATURES_MAX} signatures per delivery.", header=HEADER_SIGNATURE)
    signatures = []
    for entry in entries:
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        # Only the canonical encoding counts: no second spelling of the same signature.
        if base64.b64encode(signature).decode() == encoded:
            signatures.append(signature)
    if not signatures:
        raise _refused(
            "The webhook-signature header holds no 'v1,<base64 HMAC-SHA256>' entry.", header=HEADER_SIGNATURE
        )
    return tuple(signatures)


def webhook_headers_check(headers: Mapping[str, str], *, now: float | None = None) -> SignedHeaders:
    """Check the signature headers for presence, form and freshness; nothing is read from the body."""
    delivery_id = _header_text(headers, HEADER_ID)
    if not DELIVERY_ID_PATTERN.fullmatch(delivery_id):
        raise _refused("The webhook-id header must be 1 to 255 visible ASCII characters.", header=HEADER_ID)
    timestamp = _header_text(headers, HEADER_TIMESTAMP)
    if not TIMESTAMP_PATTERN.fullmatch(timestamp):
        raise _refused("The webhook-timestamp header must be integer Unix seconds.", header=HEADER_TIMESTAMP)
    tolerance = settings.WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS
    skew = int(timestamp) - (time.time() if now is None else now)
    if abs(skew) > tolerance:
        direction = "in the future" if skew > 0 else "old"
        raise _refused(
            f"The webhook-timestamp is {abs(int(skew))} s {direction}; at most {tolerance} s are tolerated.",
            header=HEADER_TIMESTAMP,
        )
    signatures = _signature_entries(_header_text(headers, HEADER_SIGNATURE))
    return SignedHeaders(delivery_id=delivery_id, timestamp=timestamp, signatures=signatures)


def _source_key(source_name: str) -> bytes | None:
    source = WebhookSource.objects.filter(name=source_name, is_enabled=True).first()
    if source is None:
        return None
    try:
        return webhook_secret_key(source.secret)
    except InvalidWebhookSecret:
        logger.error("webhook source %s has a malformed secret: no delivery can verify", source_name)
        return None


def _signature_verifies(key: bytes, signed: SignedHeaders, body: bytes) -> bool:
    expected = _signature_digest(key, signed.delivery_id, signed.timestamp, body)
    # Every entry is compared in full and in constant time, whatever matched before.
    matches = [hmac.compare_digest(expected, signature) for signature in signed.signatures]
    return any(matches)


def _payload_parse(body: bytes) -> dict[str, Any]:
    try:
        payload = json_parse(body)
    except JsonInputError as error:
        raise ApplicationError(f"The body is not valid JSON: {error}", code="parse_error") from error
    if not isinstance(payload, dict):
        raise ApplicationError(
            "The body must be a JSON object.",
            code="invalid",
            fields={"non_field_errors": ["The body must be a JSON object."]},
        )
    # What jsonb cannot hold is refused here, not dead-lettered by the worker later.
    if problem := json_value_problem(payload):
        place, reason = problem
        raise ApplicationError(
            f"The body holds a value that cannot be stored, at '{place}'.",
            code="invalid",
            fields={place: [reason]},
        )
    return payload


def _event_type_of(payload: dict[str, Any], header_event_type: str | None) -> str:
    event_type = payload.get("type")
    if not isinstance(event_type, str) or not event_type:
        event_type = header_event_type or "unknown"
    if len(event_type) > EVENT_TYPE_MAX_LENGTH:
        raise ApplicationError(
            "The event type is too long.",
            code="invalid",
            fields={"type": [f"At most {EVENT_TYPE_MAX_LENGTH} characters."]},
        )
    problem = text_problem(event_type)
    if problem is not None:  # only the header can carry one: the body's values are checked already
        raise ApplicationError("The event type cannot be stored.", code="invalid", fields={"type": [problem]})
    return event_type


@dataclass(frozen=True)
class WebhookReceipt:
    message: WebhookMessage
    queued: bool  # False: this delivery id was stored before; nothing was queued again


def webhook_receive(
    *,
    source_name: str,
    headers: Mapping[str, str],
    read_body: Callable[[], bytes],
    header_event_type: str | None,
) -> WebhookReceipt:
    """Verify a partner's delivery and queue it once per delivery id.

    ``read_body`` is called only once the headers and the source passed.
    """
    signed = webhook_headers_check(headers)
    key = _source_key(source_name)
    if key is None:
        raise ApplicationError(NOT_VERIFIED, code="invalid_signature")
    body = read_body()
    if not _signature_verifies(key, signed, body):
        raise ApplicationError(NOT_VERIFIED, code="invalid_signature")
    payload = _payload_parse(body)
    message, queued = webhook_event_accept(
        source=source_name,
        event_type=_event_type_of(payload, header_event_type),
        payload=payload,
        message_id=webhook_message_id(source_name=source_name, delivery_id=signed.delivery_id),
    )
    return WebhookReceipt(message=message, queued=queued)
