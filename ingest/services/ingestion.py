"""Accepting data from devices and partner systems: each request becomes one confirmed message.

The order matters for the status API and for never claiming "queued" falsely:
1. a ``pending`` ledger row is written (so the sender can ask about its id at once);
2. the message is published and the broker's confirm awaited;
3. if the broker does not confirm, the ledger row is removed and the caller gets 503.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import ApplicationError
from ingest.broker.connection import BrokerUnavailable
from ingest.broker.publisher import OutgoingMessage, get_publisher
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


def _ledger_pending_insert(*, message: PipelineMessage) -> None:
    IngestMessage.objects.create(
        message_id=message.message_id,
        kind=message.kind,
        device_id=message.device_id,
        received_at=message.accepted_at,
        readings=len(getattr(message, "readings", ())),
        events=len(getattr(message, "events", ())),
    )


def _ledger_pending_remove(*, message: PipelineMessage) -> None:
    # Only if still pending: had the broker taken it after all, the worker may have stored it.
    IngestMessage.objects.filter(message_id=message.message_id, status=IngestMessage.Status.PENDING).delete()


def _accept(message: PipelineMessage) -> None:
    _ledger_pending_insert(message=message)
    try:
        pipeline_message_publish(message=message)
    except ApplicationError:
        _ledger_pending_remove(message=message)
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
    _accept(batch)
    return batch


IMPORT_NAMESPACE = uuid.UUID("5b2f9a64-4a7e-4d57-9bd2-6f1f0f1c2a11")


def content_message_id(*, origin: str, readings: list[dict], events: list[dict]) -> uuid.UUID:
    """A message id that depends only on where the records come from and what they are.

    Sources that may send the same data again (a polled feed, a re-run import) use it:
    the second copy finds its id processed in the ledger and stores nothing.
    """
    digest = hashlib.sha256(origin.encode())
    for kind, records in (("reading", readings), ("event", events)):
        for record in records:
            digest.update(kind.encode())
            digest.update(json.dumps(record, sort_keys=True, default=str).encode())
    return uuid.uuid5(IMPORT_NAMESPACE, digest.hexdigest())


def _accept_once(message: PipelineMessage) -> bool:
    """Queue a message whose id may have been seen before, unless the ledger says it was stored.

    Returns False when it was stored before (nothing published). A message still pending
    is published again: its first copy may never have reached the broker, and a second
    copy is absorbed by the worker's ledger.
    """
    ledger = IngestMessage.objects.filter(message_id=message.message_id).first()
    if ledger is not None and ledger.status == IngestMessage.Status.PROCESSED:
        return False
    inserted = False
    if ledger is None:
        try:
            with transaction.atomic():
                _ledger_pending_insert(message=message)
            inserted = True
        except IntegrityError:
            pass  # the same message arriving twice at once: publishing twice is harmless
    try:
        pipeline_message_publish(message=message)
    except ApplicationError:
        if inserted:
            _ledger_pending_remove(message=message)
        raise
    return True


def device_batch_accept_once(
    *, device: Device, readings: list[dict[str, Any]], events: list[dict[str, Any]], message_id: uuid.UUID
) -> bool:
    """Queue records under a content-derived id unless that id was processed already.

    Returns False when the ledger says it was stored before (nothing published).
    """
    return _accept_once(DeviceBatch(message_id, device.id, timezone.now(), readings, events))


def webhook_event_accept(
    *, source: str, event_type: str, payload: dict[str, Any], message_id: uuid.UUID
) -> tuple[WebhookMessage, bool]:
    """Queue a partner system's notification for the ``webhook_events`` table.

    ``message_id`` follows the partner's delivery id: a delivery sent again is queued
    again only while the first copy is not stored, and stored once. The boolean is
    False when it was stored before and nothing was queued.
    """
    message = WebhookMessage(
        message_id=message_id,
        source=source,
        event_type=event_type,
        payload=payload,
        accepted_at=timezone.now(),
    )
    return message, _accept_once(message)
