"""What a device's MQTT publish asks to store, validated as the API validates a request.

One owner for the MQTT payload rules, used by the bridge for every publish and by the
console when an operator edits a refused publish before sending it back to its topic.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from ingest.json_input import JsonInputError, json_parse
from ingest.messages import RECORD_DEVICE
from ingest.models import Device
from ingest.mqtt.topics import RECORD_KINDS, DeviceTopic
from ingest.record_validation import DeviceRecordsSerializer
from ingest.services.ingestion import RecordsChunk

# The dead letter's kind: an MQTT payload as the device sent it (not a pipeline message).
MQTT_PUBLISH = "mqtt_publish"


class MqttPayloadRefused(Exception):
    """A published payload the API would have answered 400 (or 403) to; str() is JSON."""

    def __init__(self, *, routing_key: str, fields: dict[str, Any]) -> None:
        self.routing_key = routing_key
        self.fields = fields
        super().__init__(json.dumps({"routing_key": routing_key, "fields": fields}, default=str))


def mqtt_payload_records(body: bytes, *, kind: str) -> dict[str, Any]:
    """The payload as the API's body: ``{"readings": [...], "events": [...]}`` (unvalidated).

    Raises ValueError (with the reason) for what is not JSON of one of the accepted shapes,
    or is larger than the API accepts (INGEST_MAX_BODY_BYTES).
    """
    limit = settings.INGEST_MAX_BODY_BYTES
    if len(body) > limit:
        raise ValueError(f"The payload is {len(body)} bytes; the limit is {limit}.")
    try:
        payload = json_parse(body)
    except (JsonInputError, ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"Not JSON: {error}") from None
    if isinstance(payload, dict) and ("readings" in payload or "events" in payload):
        return payload
    if isinstance(payload, dict):
        return {kind: [payload]}
    if isinstance(payload, list):
        return {kind: payload}
    raise ValueError("Must be a JSON object (the API's body or one record) or a list of records.")


def _relayed_records_named(records: dict[str, Any], *, topic: DeviceTopic, routing_key: str) -> None:
    """On a relay topic every record is the topic's device's: named so, as the API's would be.

    A record that names another device is refused: the broker checked the topic, not the
    payload.
    """
    errors: dict[str, dict[int, dict[str, list[str]]]] = {}
    for kind in RECORD_KINDS:
        kind_records = records.get(kind)
        if not isinstance(kind_records, list):
            continue  # the serializer names what is wrong with it
        for index, record in enumerate(kind_records):
            if not isinstance(record, dict):
                continue
            if record.setdefault(RECORD_DEVICE, topic.serial_no) != topic.serial_no:
                errors.setdefault(kind, {})[index] = {
                    RECORD_DEVICE: [f"Must be {topic.serial_no}, the device this topic relays for."]
                }
    if errors:
        raise MqttPayloadRefused(routing_key=routing_key, fields=errors)


def mqtt_publish_chunk(routing_key: str, body: bytes, *, topic: DeviceTopic, sender: Device) -> RecordsChunk:
    """What one publish on ``topic`` asks to store, validated as the API validates a request.

    ``sender`` is the active device that published (the topic's device, or the relaying
    gateway). Raises MqttPayloadRefused with the field errors in the API's shape.
    """
    try:
        records = mqtt_payload_records(body, kind=topic.kind)
    except ValueError as error:
        raise MqttPayloadRefused(routing_key=routing_key, fields={"non_field_errors": [str(error)]}) from None
    if topic.via is not None:
        _relayed_records_named(records, topic=topic, routing_key=routing_key)
    serializer = DeviceRecordsSerializer(data=records, context={"device": sender})
    if not serializer.is_valid():
        raise MqttPayloadRefused(routing_key=routing_key, fields=serializer.errors)
    data = serializer.validated_data
    # The topic, not the payload, says whose data it is: the same records on another
    # device's topic (or relayed by a gateway) are other data.
    origin = f"mqtt:{topic.serial_no}:{topic.kind}"
    if topic.via is not None:
        origin += f":via:{topic.via}"
    return RecordsChunk(device=sender, origin=origin, readings=data["readings"], events=data["events"])
