"""Helpers for tests that look at what really is on this run's queues."""

from __future__ import annotations

import uuid

from django.utils import timezone

from ingest.broker.connection import open_connection
from ingest.broker.publisher import OutgoingMessage, get_publisher
from ingest.messages import DEVICE_BATCH, DeviceBatch


def queued_messages(queue: str) -> list[tuple]:
    """Take every message off the queue: ``[(properties, body), ...]``."""
    connection = open_connection()
    try:
        channel = connection.channel()
        messages = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return messages
            messages.append((properties, body))
    finally:
        connection.close()


def queue_depth(queue: str) -> int:
    connection = open_connection()
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def publish_raw(body: bytes, message_id: str | None = None) -> str:
    """Publish a body as it is (with confirms) to this run's main queue; return its id."""
    message_id = message_id or str(uuid.uuid4())
    get_publisher().publish(OutgoingMessage(message_id, body, DEVICE_BATCH))
    return message_id


def publish_device_batch(
    *, device_id: int, readings: list[dict] = (), events: list[dict] = (), message_id=None
) -> DeviceBatch:
    """Publish a device batch straight to the queue, as the API would after validation."""
    batch = DeviceBatch(
        message_id=message_id or uuid.uuid4(),
        device_id=device_id,
        accepted_at=timezone.now(),
        readings=list(readings),
        events=list(events),
    )
    publish_raw(batch.to_body(), str(batch.message_id))
    return batch
