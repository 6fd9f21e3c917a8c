"""Partner systems pushing notifications: signature check and event type."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from ingest.errors import ApplicationError
from ingest.json_input import JsonInputError, json_parse, json_value_problem
from ingest.messages import WebhookMessage
from ingest.models import WebhookSource
from ingest.services.ingestion import webhook_event_accept

SIGNATURE_PREFIX = "sha256="
EVENT_TYPE_MAX_LENGTH = 64


def webhook_signature(*, secret: str, body: bytes) -> str:
    """The ``X-Signature`` value a sender must send: ``sha256=<hex HMAC-SHA256 of the body>``."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


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
    return event_type


def webhook_receive(
    *, source_name: str, body: bytes, signature: str | None, header_event_type: str | None
) -> WebhookMessage:
    """Verify a partner's notification and queue it; the signature is checked before parsing."""
    source = WebhookSource.objects.filter(name=source_name, is_enabled=True).first()
    if source is None:
        raise ApplicationError(f"Unknown webhook source {source_name!r}.", code="not_found")
    expected = webhook_signature(secret=source.secret, body=body)
    if not signature or not hmac.compare_digest(signature.strip().lower(), expected):
        raise ApplicationError(
            "Missing or invalid X-Signature (expected 'sha256=<hex HMAC-SHA256 of the body>').",
            code="invalid_signature",
        )
    payload = _payload_parse(body)
    return webhook_event_accept(
        source=source.name, event_type=_event_type_of(payload, header_event_type), payload=payload
    )
