"""Accepting data from devices and partner systems: each request becomes one confirmed message.

The order matters for the status API and for never claiming "queued" falsely:
1. a ``pending`` ledger row is written (so the sender can ask about its id at once);
2. the message is published and the broker's confirm awaited;
3. if the broker does not confirm, the ledger row is removed and the caller gets 503.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.utils import timezone

from ingest.broker.connection import BrokerUnavailable
from ingest.broker.publisher import OutgoingMessage, get_publisher
from ingest.errors import ApplicationError
from ingest.messages import (
    HEADER_SCHEMA_VERSION,
    SCHEMA_VERSION,
    DeviceBatch,
    PipelineMessage,
    WebhookMessage,
)
from ingest.metrics import PUBLISHED
from ingest.models import Device, IngestMessage

BROKER_RETRY_AFTER_SECONDS = 5


def message_publish_confirmed(*, outgoing: OutgoingMessage) -> None:
    """Publish to the main queue and await the confirm, or raise ApplicationError (503)."""
    try:
        get_publisher().publish(outgoing)
        PUBLISHED.labels(kind=outgoing.message_type or "unknown").inc()
    except BrokerUnavailable as error:
        raise ApplicationError(
            "The message broker did not confirm the data; nothing was queued. Retry later.",
            code="broker_unavailable",
            retry_after=BROKER_RETRY_AFTER_SECONDS,
        ) from error


def pipeline_message_publish(*, message: PipelineMessage) -> None:
    message_publish_confirmed(
        outgoing=OutgoingMessage(
            message_id=str(message.message_id),
            body=message.to_body(),
            message_type=message.kind,
            headers={HEADER_SCHEMA_VERSION: SCHEMA_VERSION},
        )
    )


def _ledger_pending_insert(*, message: PipelineMessage, readings: int = 0, events: int = 0) -> None:
    IngestMessage.objects.create(
        message_id=message.message_id,
        kind=message.kind,
        device_id=message.device_id,
        received_at=message.accepted_at,
        readings=readings,
        events=events,
    )


def _accept(message: PipelineMessage, *, readings: int = 0, events: int = 0) -> None:
    _ledger_pending_insert(message=message, readings=readings, events=events)
    try:
        pipeline_message_publish(message=message)
    except ApplicationError:
        # Only if still pending: had the broker taken it after all, the worker may have stored it.
        IngestMessage.objects.filter(
            message_id=message.message_id, status=IngestMessage.Status.PENDING
        ).delete()
        raise


def device_batch_accept(
    *, device: Device, readings: list[dict[str, Any]], events: list[dict[str, Any]]
) -> DeviceBatch:
    """Queue the device's validated records; return only once the broker confirmed them."""
    batch = DeviceBatch(
        message_id=uuid.uuid4(),
        device_id=device.id,
        accepted_at=timezone.now(),
        readings=readings,
        events=events,
    )
    _accept(batch, readings=len(readings), events=len(events))
    return batch


def webhook_event_accept(*, source: str, event_type: str, payload: dict[str, Any]) -> WebhookMessage:
    """Queue a partner system's notification for the ``webhook_events`` table."""
    message = WebhookMessage(
        message_id=uuid.uuid4(),
        source=source,
        event_type=event_type,
        payload=payload,
        accepted_at=timezone.now(),
    )
    _accept(message)
    return message
