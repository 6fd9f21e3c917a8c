"""One chunk of a stream, from its protobuf form to a confirmed message (or its field errors).

The records pass the HTTP API's own rules: a chunk of readings alone, whose fields the
protobuf already typed, through ``typed_readings_validate``; any other chunk, and any
chunk those rules refuse, through the serializer itself (``DeviceRecordsSerializer``, with
the sender in its context, as the gateway rules need), which words the errors as HTTP
does. Then they go through the accept path that file import uses: a content-derived
message id, over (sender, client chunk id, records), so a chunk sent again after a
disconnect is the same message and the ledger stores it once.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC

from django.utils import timezone
from google.protobuf.json_format import MessageToDict

from ingest.grpc import ingest_stream_pb2 as pb
from ingest.json_input import json_parse
from ingest.models import Device
from ingest.record_validation import DeviceRecordsSerializer, TypedReading, typed_readings_validate
from ingest.services.ingestion import (
    ChunkGroupPublishing,
    RecordsChunk,
    chunk_group_publish_once,
    content_message_id,
)


class ChunkIdMissing(ValueError):
    """A chunk without a client chunk id: the stream itself is malformed."""


def chunk_key(chunk: pb.IngestChunk | pb.ChunkResult) -> str:
    """The client's chunk id as one string: ``id:<text>`` or ``seq:<number>``."""
    which = chunk.WhichOneof("chunk_id")
    if which == "id" and chunk.id:
        return f"id:{chunk.id}"
    if which == "seq":
        return f"seq:{chunk.seq}"
    raise ChunkIdMissing("Every chunk needs a chunk id ('id' or 'seq').")


def _instant(record, oneof: str, text_field: str, time_field: str) -> str | None:
    """An RFC 3339 string as sent, or a Timestamp written as one (UTC)."""
    which = record.WhichOneof(oneof)
    if which == text_field:
        return getattr(record, text_field)
    if which == time_field:
        return getattr(record, time_field).ToDatetime(tzinfo=UTC).isoformat()
    return None


def reading_dict(reading: pb.Reading) -> dict:
    """A reading as the HTTP API's JSON would carry it; absent fields stay absent."""
    # ListFields (one call into the protobuf runtime) yields only the fields that were set.
    item = {field.name: value for field, value in reading.ListFields()}
    measured_time = item.pop("measured_time", None)
    if measured_time is not None:
        item["measured_at"] = measured_time.ToDatetime(tzinfo=UTC).isoformat()
    return item


def typed_readings(chunk: pb.IngestChunk) -> list[TypedReading] | None:
    """The chunk's readings as typed fields, or None if it needs the serializer (events, a relayed device)."""
    if chunk.events:
        return None
    typed = []
    for reading in chunk.readings:
        if reading.HasField("device"):
            return None
        measured = reading.WhichOneof("measured")
        if measured == "measured_at":
            measured_at = reading.measured_at
        elif measured == "measured_time":
            measured_at = reading.measured_time.ToDatetime(tzinfo=UTC)
        else:
            measured_at = None
        typed.append(
            (
                reading.metric if reading.HasField("metric") else None,
                reading.value if reading.HasField("value") else None,
                reading.unit if reading.HasField("unit") else None,
                measured_at,
            )
        )
    return typed


def chunk_records_validate(*, sender: Device, chunk: pb.IngestChunk) -> tuple[dict | None, dict | None]:
    """``(validated records, None)`` as the serializer's ``validated_data``, or ``(None, field errors)``."""
    typed = typed_readings(chunk)
    if typed is not None:
        readings = typed_readings_validate(typed, now=timezone.now())
        if readings is not None:
            return {"readings": readings, "events": []}, None
    data = {
        "readings": [reading_dict(reading) for reading in chunk.readings],
        "events": [event_dict(event) for event in chunk.events],
    }
    serializer = DeviceRecordsSerializer(data=data, context={"device": sender})
    if not serializer.is_valid():
        return None, serializer.errors
    return serializer.validated_data, None


def event_dict(event: pb.Event) -> dict:
    item: dict = {}
    if event.HasField("event_type"):
        item["event_type"] = event.event_type
    if event.HasField("severity"):
        item["severity"] = event.severity
    occurred_at = _instant(event, "occurred", "occurred_at", "occurred_time")
    if occurred_at is not None:
        item["occurred_at"] = occurred_at
    which = event.WhichOneof("details")
    if which == "detail":
        item["detail"] = MessageToDict(event.detail)
    elif which == "detail_json":
        try:
            item["detail"] = json_parse(event.detail_json)
        except ValueError:
            # Left as text: the serializer refuses it as "not a dictionary", like a string on HTTP.
            item["detail"] = event.detail_json
    if event.HasField("device"):
        item["device"] = event.device
    return item


def _flatten(errors, prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    if isinstance(errors, dict):
        for name, value in errors.items():
            yield from _flatten(value, f"{prefix}.{name}" if prefix else str(name))
    elif isinstance(errors, list) and all(not isinstance(item, dict | list) for item in errors):
        yield prefix or "non_field_errors", [str(item) for item in errors]
    elif isinstance(errors, list):
        for index, value in enumerate(errors):
            yield from _flatten(value, f"{prefix}.{index}" if prefix else str(index))
    else:
        yield prefix or "non_field_errors", [str(errors)]


def chunk_errors(fields: dict) -> pb.ChunkErrors:
    """The HTTP API's ``fields`` object, as JSON and as one entry per refused field."""
    plain = json.loads(json.dumps(fields, default=str))
    return pb.ChunkErrors(
        fields=[pb.FieldError(field=name, messages=messages) for name, messages in _flatten(plain)],
        fields_json=json.dumps(plain, separators=(",", ":")),
    )


@dataclass(frozen=True)
class ChunkOutcome:
    message_id: uuid.UUID | None = None
    errors: dict | None = None


def stream_chunk_message_id(*, sender: Device, chunk: pb.IngestChunk) -> uuid.UUID:
    """The chunk's content id: its sender, its client chunk id and its records as sent.

    The records are hashed in their wire form (deterministic serialisation): the same chunk
    sent again gets the same id, at a fraction of the cost of hashing the parsed records.
    """
    digest = hashlib.sha256(chunk.SerializeToString(deterministic=True)).hexdigest()
    return content_message_id(origin=f"grpc:{sender.id}:{chunk_key(chunk)}:{digest}", readings=[], events=[])


@dataclass(frozen=True)
class StreamChunksPublishing:
    """A group of a stream's chunks, validated and handed to the broker."""

    outcomes: list[ChunkOutcome]
    publishing: ChunkGroupPublishing | None

    def confirmed(self) -> list[ChunkOutcome]:
        """One outcome per chunk, in order, once the broker confirmed every queued one.

        Raises ApplicationError (503) if it did not confirm all of them: none is to be
        answered, and all are sent again.
        """
        if self.publishing is not None:
            self.publishing.accepted()
        return self.outcomes


def stream_chunks_publish(*, sender: Device, chunks: list[pb.IngestChunk]) -> StreamChunksPublishing:
    """Validate each chunk like an HTTP request; hand the valid ones to the broker, each under its content id.

    An outcome per chunk: the message id it is queued (or was stored before) under, or
    its field errors. The valid chunks go out together (one ledger query, all in flight at
    once); their ids count only once ``confirmed()`` returned.
    """
    outcomes: list[ChunkOutcome] = []
    accepted: list[RecordsChunk] = []
    for chunk in chunks:
        records, errors = chunk_records_validate(sender=sender, chunk=chunk)
        if errors is not None:
            outcomes.append(ChunkOutcome(errors=errors))
            continue
        message_id = stream_chunk_message_id(sender=sender, chunk=chunk)
        outcomes.append(ChunkOutcome(message_id=message_id))
        accepted.append(
            RecordsChunk(
                device=sender,
                origin=f"grpc:{sender.id}",
                readings=records["readings"],
                events=records["events"],
                message_id=message_id,
            )
        )
    return StreamChunksPublishing(outcomes, chunk_group_publish_once(chunks=accepted) if accepted else None)
