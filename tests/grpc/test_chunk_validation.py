"""A stream's readings pass the HTTP API's rules: the typed path accepts exactly what the
serializer accepts, with the same result, and every refusal is the serializer's own words."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from google.protobuf.timestamp_pb2 import Timestamp
from rest_framework.test import APIClient

from ingest.grpc import ingest_stream_pb2 as pb
from ingest.grpc.chunks import chunk_records_validate, reading_dict, typed_readings
from ingest.messages import DeviceBatch
from ingest.record_validation import DeviceRecordsSerializer, typed_readings_validate
from ingest.services.devices import device_key_issue
from tests.broker import queued_messages
from tests.factories import DeviceFactory
from tests.grpc.conftest import api_key_metadata


def _timestamp(offset: timedelta) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(timezone.now() + offset)
    return stamp


def _at(offset: timedelta) -> str:
    return (timezone.now() + offset).isoformat()


def _reading(**fields) -> pb.Reading:
    values = {"metric": "heart_rate", "value": 72.5, "unit": "bpm", "measured_at": _at(-timedelta(minutes=1))}
    values.update(fields)
    reading = pb.Reading()
    for name, value in values.items():
        if callable(value):
            value = value()  # a time relative to now, made when the reading is
        if value is None:
            continue  # not sent
        if name == "measured_time":
            reading.measured_time.CopyFrom(value)
        else:
            setattr(reading, name, value)
    return reading


# Each a reading as a client may send it; None leaves the field out. Times are made when the
# reading is (a callable), not at import: the suite may reach a test minutes later, when
# "10 minutes ahead" is no longer beyond the allowed clock skew.
READINGS = {
    "valid": {},
    "no unit": {"unit": None},
    "empty unit": {"unit": ""},
    "unit at its limit": {"unit": "u" * 16},
    "unit too long": {"unit": "u" * 17},
    "unit with NUL": {"unit": "b\x00pm"},
    "no metric": {"metric": None},
    "empty metric": {"metric": ""},
    "metric not a name": {"metric": "Heart-Rate"},
    "metric too long": {"metric": "m" * 33},
    "no value": {"value": None},
    "zero value": {"value": 0.0},
    "NaN": {"value": float("nan")},
    "infinite value": {"value": float("inf")},
    "no time": {"measured_at": None},
    "time not ISO": {"measured_at": "yesterday"},
    "time without a zone": {"measured_at": lambda: timezone.now().replace(tzinfo=None).isoformat()},
    "time with Z": {"measured_at": lambda: _at(-timedelta(minutes=1)).replace("+00:00", "Z")},
    "time in the future": {"measured_at": lambda: _at(timedelta(minutes=10))},
    "time too old": {"measured_at": lambda: _at(-timedelta(days=31))},
    "Timestamp": {"measured_at": None, "measured_time": lambda: _timestamp(-timedelta(seconds=30))},
    "Timestamp in the future": {
        "measured_at": None,
        "measured_time": lambda: _timestamp(timedelta(minutes=10)),
    },
    "Timestamp too old": {"measured_at": None, "measured_time": lambda: _timestamp(-timedelta(days=31))},
}


def _serializer_result(sender, chunk: pb.IngestChunk):
    data = {"readings": [reading_dict(reading) for reading in chunk.readings], "events": []}
    serializer = DeviceRecordsSerializer(data=data, context={"device": sender})
    if serializer.is_valid():
        return serializer.validated_data["readings"], None
    return None, serializer.errors


@pytest.mark.parametrize("case", READINGS)
def test_the_typed_path_accepts_what_the_serializer_accepts_and_nothing_else(case):
    sender = DeviceFactory.build(id=1)
    chunk = pb.IngestChunk(seq=0, readings=[_reading(), _reading(**READINGS[case]), _reading()])

    expected, expected_errors = _serializer_result(sender, chunk)
    typed = typed_readings_validate(typed_readings(chunk), now=timezone.now())
    records, errors = chunk_records_validate(sender=sender, chunk=chunk)

    assert typed == expected  # the same readings, or None where the serializer refuses
    assert errors == expected_errors
    assert (records["readings"] if records else None) == expected


@pytest.mark.parametrize(
    ("readings", "message"),
    [(0, "Send at least one reading or event."), (4, "At most 3 records per request; got 4.")],
)
def test_a_chunk_of_no_readings_or_too_many_gets_the_serializers_refusal(settings, readings, message):
    settings.INGEST_MAX_RECORDS = 3
    sender = DeviceFactory.build(id=1)
    chunk = pb.IngestChunk(seq=0, readings=[_reading() for _ in range(readings)])

    records, errors = chunk_records_validate(sender=sender, chunk=chunk)

    assert typed_readings_validate(typed_readings(chunk), now=timezone.now()) is None
    assert records is None
    assert errors == {"non_field_errors": [message]}


def test_chunks_with_events_or_a_relayed_device_are_left_to_the_serializer():
    with_event = pb.IngestChunk(seq=0, readings=[_reading()], events=[pb.Event(event_type="fall_detected")])
    relayed = pb.IngestChunk(seq=1, readings=[_reading(), _reading(device="DEV-OTHER")])

    assert typed_readings(with_event) is None
    assert typed_readings(relayed) is None
    # ... which refuses the relayed reading of a device that is no gateway, as on HTTP.
    records, errors = chunk_records_validate(sender=DeviceFactory.build(id=1), chunk=relayed)
    assert records is None
    assert list(errors["readings"]) == [1]


# Not NaN: JSON has no way to say it, so HTTP refuses that body before any rule is applied.
BAD_READINGS = ["unit too long", "unit with NUL", "no metric", "metric not a name", "no value"]
BAD_READINGS += ["time not ISO", "time without a zone", "time in the future", "Timestamp too old"]


def _on_a_stream_and_over_http(stub, cases: list[str]):
    """The same readings as one chunk of a new device's stream, then as one HTTP request:
    (the chunk's result, the HTTP response)."""
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    chunk = pb.IngestChunk(seq=0, readings=[_reading(**READINGS[case]) for case in cases])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    [result] = stub.Stream(iter([chunk]), metadata=api_key_metadata(key), timeout=30)
    http = client.post(
        "/api/v1/ingest/",
        data=json.dumps({"readings": [reading_dict(reading) for reading in chunk.readings]}),
        content_type="application/json",
    )
    return result, http


@pytest.mark.usefixtures("committed_db")
def test_a_stream_refuses_bad_readings_with_the_http_apis_own_errors(stub, ingest_queue):
    result, http = _on_a_stream_and_over_http(stub, ["valid", *BAD_READINGS])

    assert result.WhichOneof("outcome") == "errors"
    assert http.status_code == 400, http.content
    assert json.loads(result.errors.fields_json) == http.json()["fields"]
    assert len(json.loads(result.errors.fields_json)["readings"]) == len(BAD_READINGS)
    assert queued_messages(ingest_queue.queue) == []


@pytest.mark.usefixtures("committed_db")
def test_a_stream_queues_valid_readings_as_the_http_api_queues_them(stub, ingest_queue):
    cases = ["valid", "no unit", "empty unit", "zero value", "time with Z", "Timestamp"]
    result, http = _on_a_stream_and_over_http(stub, cases)

    assert result.WhichOneof("outcome") == "message_id"
    assert http.status_code == 202
    messages = [DeviceBatch.from_data(json.loads(body)) for _, body in queued_messages(ingest_queue.queue)]
    assert [str(message.message_id) for message in messages] == [result.message_id, http.json()["id"]]
    assert messages[0].readings == messages[1].readings
    assert len(messages[0].readings) == len(cases)
