"""The wire format of messages on the ingest queue.

Every message is JSON with a ``kind`` and a ``schema_version``, and carries a stable id
(the one returned to the sender, also the AMQP ``message_id``). A worker refuses what it
does not understand (dead letter at once) instead of guessing.
"""

from __future__ import annotations

import json
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from ingest.json_input import JSON_MAX_DEPTH, JsonInputError, json_depth_exceeds, json_parse

SCHEMA_VERSION = 1
DEVICE_BATCH = "device_batch"
WEBHOOK_EVENT = "webhook_event"

# A record a gateway relays names its device: by serial as the gateway sent it, and by id,
# which the worker stores it under. A record without them is the sending device's own,
# as in every message from before gateways.
RECORD_DEVICE = "device"
RECORD_DEVICE_ID = "device_id"

# A message wraps what was accepted (a webhook's body becomes its "payload"): one level more.
MESSAGE_MAX_DEPTH = JSON_MAX_DEPTH + 1

# AMQP headers the pipeline sets and reads. The failure headers (``x-*``) are written
# and read only through ``FailureEnvelope``.
HEADER_SCHEMA_VERSION = "schema_version"
_FAILURES = "x-failures"  # ISO times of every failed attempt, oldest first
_ERROR_CLASS = "x-error-class"
_ERROR_MESSAGE = "x-error-message"
_TRACEBACK = "x-traceback"
_ORIGINAL_QUEUE = "x-original-queue"
_ORIGINAL_ROUTING_KEY = "x-original-routing-key"
# Set by RabbitMQ itself when it dead-letters a message (newest entry first).
_BROKER_DEATHS = "x-death"

ERROR_MESSAGE_MAX_CHARS = 4000
TRACEBACK_MAX_CHARS = 16_000


def _header_text(value: Any) -> str:
    """A header value as text: bytes decoded (undecodable bytes escaped), None as ""."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    return str(value)


def _failure_times(values: Any) -> tuple[datetime, ...]:
    times = []
    for value in values if isinstance(values, list | tuple) else []:
        try:
            instant = datetime.fromisoformat(_header_text(value))
        except ValueError:
            continue
        times.append(instant if instant.tzinfo else instant.replace(tzinfo=UTC))
    return tuple(times)


@dataclass(frozen=True)
class FailureEnvelope:
    """A message's failure history, carried in its AMQP headers from try to try.

    The worker adds a failure each time an attempt fails (``after_failure``) and marks
    the message dead when it runs out of attempts (``dead``); the dead-letter recorder
    and the console read it back (``from_headers``). Headers may come from anywhere:
    reading never fails, entries that are not ISO times are skipped, a time without a
    zone is taken as UTC.
    """

    failures: tuple[datetime, ...] = ()
    error_class: str = ""
    error_message: str = ""
    traceback: str = ""
    original_queue: str = ""
    original_routing_key: str = ""

    @property
    def attempts(self) -> int:
        return len(self.failures)

    @classmethod
    def from_headers(cls, headers: Mapping[str, Any]) -> FailureEnvelope:
        envelope = cls(
            failures=_failure_times(headers.get(_FAILURES)),
            error_class=_header_text(headers.get(_ERROR_CLASS)),
            error_message=_header_text(headers.get(_ERROR_MESSAGE)),
            traceback=_header_text(headers.get(_TRACEBACK)),
            original_queue=_header_text(headers.get(_ORIGINAL_QUEUE)),
            original_routing_key=_header_text(headers.get(_ORIGINAL_ROUTING_KEY)),
        )
        if envelope.error_class:
            return envelope
        return envelope.broker_dead_lettered(headers.get(_BROKER_DEATHS))

    def broker_dead_lettered(self, deaths: Any) -> FailureEnvelope:
        """The broker's own reason, for a message it dead-lettered without the worker's say.

        A quorum queue does that past ``x-delivery-limit`` (see ``broker.topology``): the
        console then shows why, and where the message came from, like any failure.
        """
        latest = deaths[0] if isinstance(deaths, list | tuple) and deaths else None
        if not isinstance(latest, Mapping):
            return self
        reason = _header_text(latest.get("reason"))
        queue = _header_text(latest.get("queue"))
        routing_keys = latest.get("routing-keys")
        explanations = {
            "delivery_limit": "delivered more times than the queue's x-delivery-limit without an ack "
            "(a worker stopped each time while holding it)",
        }
        return replace(
            self,
            error_class=f"rabbitmq.dead_lettered.{reason or 'unknown'}",
            error_message=f"RabbitMQ dead-lettered it from {queue or 'a queue'}: "
            + explanations.get(reason, f"reason {reason or 'not given'}"),
            original_queue=self.original_queue or queue,
            original_routing_key=self.original_routing_key
            or (
                _header_text(routing_keys[0])
                if isinstance(routing_keys, list | tuple) and routing_keys
                else ""
            ),
        )

    def after_failure(self, error: BaseException, *, at: datetime) -> FailureEnvelope:
        """This history with one more failed attempt, caused by ``error``."""
        return replace(
            self,
            failures=(*self.failures, at),
            error_class=f"{type(error).__module__}.{type(error).__qualname__}",
            error_message=str(error).strip()[:ERROR_MESSAGE_MAX_CHARS],
            traceback="".join(traceback.format_exception(error))[-TRACEBACK_MAX_CHARS:],
        )

    def dead(self, *, original_queue: str, original_routing_key: str) -> FailureEnvelope:
        """Marked for the dead-letter queue, with where it was consumed from."""
        return replace(self, original_queue=original_queue, original_routing_key=original_routing_key)

    def to_headers(self) -> dict[str, Any]:
        headers: dict[str, Any] = {
            _FAILURES: [instant.isoformat() for instant in self.failures],
            _ERROR_CLASS: self.error_class,
            _ERROR_MESSAGE: self.error_message,
            _TRACEBACK: self.traceback,
        }
        if self.original_queue:
            headers[_ORIGINAL_QUEUE] = self.original_queue
            headers[_ORIGINAL_ROUTING_KEY] = self.original_routing_key
        return headers

    def applied_to(self, headers: Mapping[str, Any]) -> dict[str, Any]:
        """``headers`` with this envelope's failure headers in place of any earlier ones."""
        return {**headers, **self.to_headers()}

    @staticmethod
    def without_traceback(headers: Mapping[str, Any]) -> dict[str, Any]:
        """``headers`` less the traceback: the console shows it once, in its own place."""
        return {name: value for name, value in headers.items() if name != _TRACEBACK}


def failure_times_of(headers: Mapping[str, Any]) -> list[datetime]:
    """The times of a message's failed attempts, read from its headers."""
    return list(FailureEnvelope.from_headers(headers).failures)


class UndecodableMessage(Exception):
    """The body is not a message this worker understands; retrying cannot help."""


def _relayed_device_ids(records: list[dict[str, Any]]) -> set[int]:
    device_ids = {record[RECORD_DEVICE_ID] for record in records if RECORD_DEVICE_ID in record}
    for device_id in device_ids:
        if type(device_id) is not int:
            raise TypeError(f"a record's {RECORD_DEVICE_ID} is not an integer: {device_id!r}")
    return device_ids


@dataclass(frozen=True)
class DeviceBatch:
    """A device's records. ``device_id`` is the sender; a gateway's records may each name
    another device of its household (``RECORD_DEVICE_ID``), listed in ``relayed_device_ids``."""

    message_id: uuid.UUID
    device_id: int
    accepted_at: datetime
    readings: list[dict[str, Any]]
    events: list[dict[str, Any]]
    relayed_device_ids: frozenset[int] = field(init=False, compare=False)

    kind = DEVICE_BATCH

    def __post_init__(self):
        relayed = _relayed_device_ids(self.readings) | _relayed_device_ids(self.events)
        relayed.discard(self.device_id)
        object.__setattr__(self, "relayed_device_ids", frozenset(relayed))

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
        # The parsed document is this call's own: readings are converted in place, the
        # cheapest way through the worker's busiest loop.
        readings = data.get("readings", [])
        reading = None
        try:
            for reading in readings:
                reading["measured_at"] = datetime.fromisoformat(reading["measured_at"])
                if not (
                    isinstance(reading["metric"], str)
                    and isinstance(reading["value"], int | float)
                    and not isinstance(reading["value"], bool)
                    and isinstance(reading.get("unit"), str | None)
                ):
                    raise TypeError("a reading's metric, value or unit is not of its type")
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            # Named by its place, so that the console can point at the record; found only
            # now, because counting in the loop would cost every reading of every message.
            raise _record_error(error, "readings", _index_of(reading, readings)) from error
        events = []
        for index, event in enumerate(data.get("events", [])):
            try:
                events.append({**event, "occurred_at": datetime.fromisoformat(event["occurred_at"])})
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                raise _record_error(error, "events", index) from error
        for index, event in enumerate(events):
            try:
                # A message's own levels: the message, its events list, the event.
                _nesting_check(event.get("detail"), MESSAGE_MAX_DEPTH - 3)
            except UndecodableMessage as error:
                raise UndecodableMessage(f"events[{index}]: {error}") from error
        return cls(
            message_id=uuid.UUID(data["message_id"]),
            device_id=int(data["device_id"]),
            accepted_at=datetime.fromisoformat(data["accepted_at"]),
            readings=readings,
            events=events,
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
        _nesting_check(data["payload"], MESSAGE_MAX_DEPTH - 1)
        return cls(
            message_id=uuid.UUID(data["message_id"]),
            source=str(data["source"]),
            event_type=str(data["event_type"]),
            payload=data["payload"],
            accepted_at=datetime.fromisoformat(data["accepted_at"]),
        )


def _index_of(item: Any, items: Any) -> int | None:
    if not isinstance(items, list):
        return None
    return next((index for index, candidate in enumerate(items) if candidate is item), None)


class MalformedRecord(ValueError):
    """A record of a message that cannot be read, named by its place (``readings[3]``)."""


def _record_error(error: Exception, records: str, index: int | None) -> Exception:
    if index is None:
        return error
    return MalformedRecord(f"{records}[{index}]: {error!r}")


def _nesting_check(value: Any, limit: int) -> None:
    """Only event details and webhook payloads may nest: each is bounded where it is."""
    if isinstance(value, dict | list) and json_depth_exceeds(value, limit):
        raise UndecodableMessage(f"the JSON is nested more than {MESSAGE_MAX_DEPTH} levels deep")


PipelineMessage = DeviceBatch | WebhookMessage
_KINDS = {DEVICE_BATCH: DeviceBatch, WEBHOOK_EVENT: WebhookMessage}


def _dump(data: dict) -> bytes:
    return json.dumps({"schema_version": SCHEMA_VERSION, **data}, separators=(",", ":")).encode()


def message_decode(body: bytes) -> PipelineMessage:
    """Parse a message body; raise UndecodableMessage for anything not understood."""
    try:
        # Nesting is bounded where it is allowed (``_nesting_check``): walking every
        # reading of every message for it would be most of the decoding time.
        data = json_parse(body, max_depth=None)
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
