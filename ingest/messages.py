"""The wire format of messages on the ingest queue.

Every message carries a stable id (the one returned to the device) and a schema
version, so a worker can refuse what it does not understand instead of guessing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SCHEMA_VERSION = 1
DEVICE_BATCH = "device_batch"


class UndecodableMessage(Exception):
    """The body is not a message this worker understands; retrying cannot help."""


@dataclass(frozen=True)
class DeviceBatch:
    message_id: uuid.UUID
    device_id: int
    accepted_at: datetime
    readings: list[dict[str, Any]]
    events: list[dict[str, Any]]

    def to_body(self) -> bytes:
        return json.dumps(
            {
                "schema_version": SCHEMA_VERSION,
                "kind": DEVICE_BATCH,
                "message_id": str(self.message_id),
                "device_id": self.device_id,
                "accepted_at": self.accepted_at.isoformat(),
                "readings": [
                    {**reading, "measured_at": reading["measured_at"].isoformat()}
                    for reading in self.readings
                ],
                "events": [
                    {**event, "occurred_at": event["occurred_at"].isoformat()}
                    for event in self.events
                ],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_body(cls, body: bytes) -> DeviceBatch:
        try:
            data = json.loads(body)
            if data.get("schema_version") != SCHEMA_VERSION or data.get("kind") != DEVICE_BATCH:
                raise UndecodableMessage(
                    f"unknown kind {data.get('kind')!r} or schema version "
                    f"{data.get('schema_version')!r}"
                )
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
        except UndecodableMessage:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise UndecodableMessage(f"malformed message body: {error!r}") from error
