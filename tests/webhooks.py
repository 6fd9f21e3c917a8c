"""Signing deliveries the way a partner does (Standard Webhooks), for tests that post webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid

from rest_framework.test import APIClient

# "whsec_" + base64 of 32 bytes, as the admin asks for.
TEST_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw8rX7ghW5p0E="


def partner_signature(*, secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    """The scheme written out from the specification, independently of the code under test."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = delivery_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(
    body: bytes,
    *,
    secret: str = TEST_SECRET,
    delivery_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The three headers a partner sends, for Django's test client (``HTTP_...`` keys)."""
    delivery_id = delivery_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = partner_signature(secret=secret, delivery_id=delivery_id, timestamp=timestamp, body=body)
    return {
        "HTTP_WEBHOOK_ID": delivery_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(timestamp),
        "HTTP_WEBHOOK_SIGNATURE": signature,
    }


def webhook_post(body: bytes, headers: dict[str, str], *, source: str = "carelink", **extra):
    return APIClient().post(
        f"/api/v1/webhooks/{source}/", data=body, content_type="application/json", **headers, **extra
    )


def signed_webhook_post(body: bytes, *, source: str = "carelink", secret: str = TEST_SECRET, **extra):
    return webhook_post(body, signed_headers(body, secret=secret), source=source, **extra)
