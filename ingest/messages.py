"""The wire format of messages on the ingest queue.

Every message is JSON with a ``kind`` and a ``schema_version``, and carries a stable id
(the one returned to the sender, also the AMQP ``message_id``). A worker refuses what it
does not understand (dead letter at once) instead of guessing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ingest.json_input import JSON_MAX_DEPTH, JsonInputError, json_parse

SCHEMA_VERSION = 1
DEVICE_BATCH = "device_batch"
WEBHOOK_EVENT = "webhook_event"

# A message wraps what was accepted (a webhook's body becomes its "payload"): one level more.
MESSAGE_MAX_DEPTH = JSON_MAX_DEPTH + 1

# AMQP headers the pipeline sets and reads.
HEADER_SCHEMA_VERSION = "schema_version"
HEADER_FAILURES = "x-failures"  # ISO times of every failed attempt, oldest first
HEADER_ERROR_CLASS = "x-error-class"
HEADER_ERROR_MESSAGE = "x-error-message"
HEADER_TRACEBACK = "x-traceback"
HEADER_ORIGINAL_QUEUE = "x-original-queue"
HEADER_ORIGINAL_ROUTING_KEY = "x-original-routing-key"


def failure_times_of(headers: Mapping[str, Any]) -> list[datetime]:
    """The times of a message's failed attempts, read from its ``x-failures`` header.

    Entries that are not ISO times are skipped (a header may come from anywhere); a time
    without a zone is taken as UTC.
    """
    values = headers.get(HEADER_FAILURES)
    times = []
    for value in values if isinstance(values, list | tuple) else []:
        try:
            instant = datetime.fromisoformat(str(value))
        except ValueError:
            continue
        times.append(instant if instant.tzinfo else instant.replace(tzinfo=UTC))
    return times


class UndecodableMessage(Exception):
    """The body is not a message this worker understands; retrying cannot help."""


@dataclass(frozen=True)
class DeviceBatch:
    message_id: uuid.UUID
    device_id: int
    accepted_at: datetime
    readings: list[dict[str, Any]]
    events: list[dict[str, Any]]

    kind = DEVICE_BATCH

    def to_body(self) -> bytes:
        return _dump(
            {
                "kind": DEVICE_BATCH,
                "message_id": str(self.message_id),
                "device_id": self.device_id,
                "accepted_at": self.accepted_at.isoformat(),
                "readings": [
                    {**reading, "measured_at": reading["measured_at"].isoformat()}
                    for reading in self.readings
                ],
                "events": [
                    {**event, "occurred_at": event["occurred_at"].isoformat()} for event in self.events
                ],
            }
        )

    @classmethod
    def from_data(cls, data: dict) -> DeviceBatch:
        return cls(
            message_id=uuid.UUID(data["message_id"]),
            device_id=int(data["device_id"]),
            accepted_at=datetime.fromisoformat(data["accepted_at"]),
            readings=[
                {**reading, "measured_at": datetime.fromisoformat(reading["measured_at"])}
                for reading in data.get("readings", [])
            ],
            events=[
                {**event, "occurred_at": datetime.fromisoformat(event["occurred_at"])}
                for event in data.get("events", [])
            ],
        )


@dataclass(frozen=True)
class WebhookMessage:
    message_id: uuid.UUID
    source: str
    event_type: str
    payload: dict[str, Any]
    accepted_at: datetime

    kind = WEBHOOK_EVENT
    device_id = None

    def to_body(self) -> bytes:
        return _dump(
            {
                "kind": WEBHOOK_EVENT,
                "message_id": str(self.message_id),
                "source": self.source,
                "event_type": self.event_type,
                "payload": self.payload,
                "accepted_at": self.accepted_at.isoformat(),
            }
        )

    @classmethod
    def from_data(cls, data: dict) -> WebhookMessage:
        if not isinstance(data["payload"], dict):
            raise TypeError("payload must be a JSON object")
        return cls(
            message_id=uuid.UUID(data["message_id"]),
            source=str(data["source"]),
            event_type=str(data["event_type"]),
            payload=data["payload"],
            accepted_at=datetime.fromisoformat(data["accepted_at"]),
        )


PipelineMessage = DeviceBatch | WebhookMessage
_KINDS = {DEVICE_BATCH: DeviceBatch, WEBHOOK_EVENT: WebhookMessage}


def _dump(data: dict) -> bytes:
    return json.dumps({"schema_version": SCHEMA_VERSION, **data}, separators=(",", ":")).encode()


def message_decode(body: bytes) -> PipelineMessage:
    """Parse a message body; raise UndecodableMessage for anything not understood."""
    try:
        data = json_parse(body, max_depth=MESSAGE_MAX_DEPTH)
    except JsonInputError as error:
        raise UndecodableMessage(f"body is not JSON: {error}") from error
    if not isinstance(data, dict):
        raise UndecodableMessage("body is not a JSON object")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise UndecodableMessage(f"unknown schema version {data.get('schema_version')!r}")
    message_class = _KINDS.get(data.get("kind"))
    if message_class is None:
        raise UndecodableMessage(f"unknown message kind {data.get('kind')!r}")
    try:
        return message_class.from_data(data)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UndecodableMessage(f"malformed {data['kind']} message: {error!r}") from error


def message_id_of(body: bytes) -> str | None:
    """Best effort: the id inside a body that may not decode as a whole."""
    try:
        data = json_parse(body, max_depth=MESSAGE_MAX_DEPTH)
        return str(uuid.UUID(str(data["message_id"])))
    except (ValueError, KeyError, TypeError):
        return None
