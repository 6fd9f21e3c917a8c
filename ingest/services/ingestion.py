"""Accepting data from devices and partner systems: the one accept path.

Every entrance (the ingest API, webhooks, collection sources, file import) validates its
records, builds a message and publishes it with the broker's confirm. Nothing is written
to the database here: the worker writes the ledger row when it stores (or fails) the
message, and the id handed out says when and to whom it was issued (ingest/message_ids.py),
which is all the status API needs until then.

What a crash leaves behind:
- before the confirm: the caller sees 503 (or a dropped connection) and nothing is
  claimed; if the broker did take the message after all, a retry is a second message
  whose readings the customer's unique constraint absorbs (content ids: the ledger does);
- after the confirm: the message is persistent in a durable queue and will be stored.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from core.errors import ApplicationError
from ingest.broker.connection import BrokerUnavailable
from ingest.broker.publisher import OutgoingMessage, PendingConfirms, get_publisher, publish_many_start
from ingest.message_ids import message_id_issue
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
# Chunks published together (each its own message, all in flight at once) after one ledger
# query: large enough to keep the broker's confirms pipelined, small enough that a failed
# group costs little to publish again.
CHUNKS_PER_GROUP = 64


def _broker_unavailable() -> ApplicationError:
    return ApplicationError(
        "The message broker did not confirm the data; nothing was queued. Retry later.",
        code="broker_unavailable",
        retry_after=BROKER_RETRY_AFTER_SECONDS,
    )


def _outgoing(message: PipelineMessage) -> OutgoingMessage:
    return OutgoingMessage(
        message_id=str(message.message_id),
        body=message.to_body(),
        message_type=message.kind,
        headers={HEADER_SCHEMA_VERSION: SCHEMA_VERSION},
    )


def message_publish_confirmed(*, outgoing: OutgoingMessage) -> None:
    """Publish to the main queue and await the confirm, or raise ApplicationError (503)."""
    try:
        get_publisher().publish(outgoing)
    except BrokerUnavailable as error:
        raise _broker_unavailable() from error
    PUBLISHED.labels(kind=outgoing.message_type or "unknown").inc()


def pipeline_message_publish(*, message: PipelineMessage) -> None:
    message_publish_confirmed(outgoing=_outgoing(message))


def device_batch_accept(
    *, device: Device, readings: list[dict[str, Any]], events: list[dict[str, Any]]
) -> DeviceBatch:
    """Queue the device's validated records; return only once the broker confirmed them.

    ``readings`` and ``events`` are ``DeviceRecordsSerializer``'s, validated with this
    device as ``context["device"]``: a gateway's relayed records already name their
    device (``ingest.relaying``). The message is the sender's, whoever the records are for.
    """
    accepted_at = timezone.now()
    batch = DeviceBatch(
        message_id=message_id_issue(device_id=device.id, at=accepted_at),
        device_id=device.id,
        accepted_at=accepted_at,
        readings=readings,
        events=events,
    )
    pipeline_message_publish(message=batch)
    return batch


IMPORT_NAMESPACE = uuid.UUID("5b2f9a64-4a7e-4d57-9bd2-6f1f0f1c2a11")
# json.dumps(record, sort_keys=True, default=str) without building an encoder per record.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, default=str).encode


def content_message_id(*, origin: str, readings: list[dict], events: list[dict]) -> uuid.UUID:
    """A message id that depends only on where the records come from and what they are.

    Sources that may send the same data again (a polled feed, a re-run import) use it:
    the second copy finds its id processed in the ledger and stores nothing.
    """
    digest = hashlib.sha256(origin.encode())
    for kind, records in (("reading", readings), ("event", events)):
        for record in records:
            digest.update(kind.encode())
            digest.update(_CANONICAL_JSON(record).encode())
    return uuid.uuid5(IMPORT_NAMESPACE, digest.hexdigest())


def _processed_ids(message_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    return set(
        IngestMessage.objects.filter(
            message_id__in=list(message_ids), status=IngestMessage.Status.PROCESSED
        ).values_list("message_id", flat=True)
    )


def webhook_event_accept(
    *, source: str, event_type: str, payload: dict[str, Any], message_id: uuid.UUID
) -> tuple[WebhookMessage, bool]:
    """Queue a partner system's notification for the ``webhook_events`` table.

    ``message_id`` follows the partner's delivery id: a delivery sent again is queued
    again only while the first copy is not stored, and stored once. The boolean is
    False when the ledger says it was stored before and nothing was queued. A copy still
    on its way is published again: the first may never have reached the broker, and the
    worker's ledger absorbs the second.
    """
    message = WebhookMessage(
        message_id=message_id,
        source=source,
        event_type=event_type,
        payload=payload,
        accepted_at=timezone.now(),
    )
    if _processed_ids([message_id]):
        return message, False
    pipeline_message_publish(message=message)
    return message, True


@dataclass(frozen=True)
class RecordsChunk:
    """Records of one device from one origin, published as one message with a content id."""

    device: Device
    origin: str
    readings: list[dict[str, Any]]
    events: list[dict[str, Any]]
    # A source that already derived the chunk's content id (with ``content_message_id``)
    # gives it, so that the records are not hashed a second time.
    message_id: uuid.UUID | None = None

    @property
    def size(self) -> int:
        return len(self.readings) + len(self.events)


@dataclass
class ChunksAccepted:
    """What ``records_chunks_accept_once`` did, in records and messages."""

    records_published: int = 0
    messages_published: int = 0
    records_already_processed: int = 0

    def add(self, other: ChunksAccepted) -> None:
        self.records_published += other.records_published
        self.messages_published += other.messages_published
        self.records_already_processed += other.records_already_processed


def records_chunks(
    *, device: Device, origin: str, readings: list[dict], events: list[dict], size: int
) -> list[RecordsChunk]:
    """Split a device's records into chunks of at most ``size`` records, readings first."""
    records = [("reading", record) for record in readings] + [("event", record) for record in events]
    chunks = []
    for start in range(0, len(records), size):
        part = records[start : start + size]
        chunks.append(
            RecordsChunk(
                device=device,
                origin=origin,
                readings=[record for kind, record in part if kind == "reading"],
                events=[record for kind, record in part if kind == "event"],
            )
        )
    return chunks


def records_chunks_accept_once(*, chunks: Sequence[RecordsChunk]) -> ChunksAccepted:
    """Publish each chunk under a content id, skipping the ones the ledger says are stored.

    One ledger query per group of CHUNKS_PER_GROUP chunks, and the group's messages all in
    flight at once. A chunk seen before but not yet processed is published again (its
    first copy may never have reached the broker; the ledger absorbs a second copy).
    Raises ApplicationError (503) if the broker did not confirm every message: the caller
    stops, and running again publishes only what is missing.
    """
    accepted = ChunksAccepted()
    for start in range(0, len(chunks), CHUNKS_PER_GROUP):
        accepted.add(chunk_group_publish_once(chunks=chunks[start : start + CHUNKS_PER_GROUP]).accepted())
    return accepted


class ChunkGroupPublishing:
    """A group of chunks handed to the broker: ``accepted()`` waits for the confirms."""

    def __init__(
        self,
        *,
        already_processed: int,
        to_publish: dict[str, tuple[RecordsChunk, DeviceBatch]],
        confirms: PendingConfirms | None,
    ) -> None:
        self._already_processed = already_processed
        self._to_publish = to_publish
        self._confirms = confirms

    def accepted(self) -> ChunksAccepted:
        """What was queued, once the broker confirmed all of it; else ApplicationError (503)."""
        accepted = ChunksAccepted(records_already_processed=self._already_processed)
        if self._confirms is None:
            return accepted
        confirmed, error = self._confirms.wait()
        for message_id in confirmed:
            chunk, batch = self._to_publish[message_id]
            accepted.records_published += chunk.size
            accepted.messages_published += 1
            PUBLISHED.labels(kind=batch.kind).inc()
        if error is not None or len(confirmed) < len(self._to_publish):
            raise _broker_unavailable() from error
        return accepted


def chunk_group_publish_once(*, chunks: Sequence[RecordsChunk]) -> ChunkGroupPublishing:
    """One group of ``records_chunks_accept_once``, returning once its messages are handed over.

    The ledger is asked once for the whole group. The caller may prepare the next group
    while the broker confirms this one; nothing is queued for sure before ``accepted()``.
    """
    already_processed = 0
    accepted_at = timezone.now()
    batches = [
        (
            chunk,
            DeviceBatch(
                message_id=chunk.message_id
                or content_message_id(origin=chunk.origin, readings=chunk.readings, events=chunk.events),
                device_id=chunk.device.id,
                accepted_at=accepted_at,
                readings=chunk.readings,
                events=chunk.events,
            ),
        )
        for chunk in chunks
    ]
    processed = _processed_ids(batch.message_id for _, batch in batches)
    to_publish: dict[str, tuple[RecordsChunk, DeviceBatch]] = {}
    for chunk, batch in batches:
        # The same content twice in one group is one message, like content already stored.
        if batch.message_id in processed or str(batch.message_id) in to_publish:
            already_processed += chunk.size
        else:
            to_publish[str(batch.message_id)] = (chunk, batch)
    confirms = (
        publish_many_start([_outgoing(batch) for _, batch in to_publish.values()]) if to_publish else None
    )
    return ChunkGroupPublishing(already_processed=already_processed, to_publish=to_publish, confirms=confirms)
