"""Accepting device data: validated records become one confirmed broker message."""

from __future__ import annotations

import uuid
from typing import Any

from django.utils import timezone

from ingest.broker.connection import BrokerUnavailable
from ingest.broker.publisher import OutgoingMessage, get_publisher
from ingest.errors import ApplicationError
from ingest.messages import DEVICE_BATCH, SCHEMA_VERSION, DeviceBatch
from ingest.models import Device

BROKER_RETRY_AFTER_SECONDS = 5


def device_batch_accept(
    *, device: Device, readings: list[dict[str, Any]], events: list[dict[str, Any]]
) -> DeviceBatch:
    """Publish the device's records; return only once the broker confirmed the message."""
    batch = DeviceBatch(
        message_id=uuid.uuid4(),
        device_id=device.id,
        accepted_at=timezone.now(),
        readings=readings,
        events=events,
    )
    message = OutgoingMessage(
        message_id=str(batch.message_id),
        body=batch.to_body(),
        message_type=DEVICE_BATCH,
        headers={"schema_version": SCHEMA_VERSION, "device_id": device.id},
    )
    try:
        get_publisher().publish(message)
    except BrokerUnavailable as error:
        raise ApplicationError(
            "The message broker did not confirm the data; nothing was queued. Retry later.",
            code="broker_unavailable",
            retry_after=BROKER_RETRY_AFTER_SECONDS,
        ) from error
    return batch
