"""IngestStream against the real broker and database: answers in order, refusals by status code."""

from __future__ import annotations

import json
import threading
import time
import uuid

import grpc
import pytest
from django.core.cache import caches
from django.utils import timezone
from google.protobuf.timestamp_pb2 import Timestamp

from ingest.broker.publisher import publisher_reset
from ingest.grpc import ingest_stream_pb2 as pb
from ingest.models import DeviceEvent, DeviceStatus, IngestMessage, SensorReading
from ingest.services.devices import device_key_issue
from tests.broker import queue_depth
from tests.factories import DeviceFactory
from tests.grpc.conftest import api_key_metadata, reading_chunk
from tests.tcp_proxy import TcpProxy
from tests.workers import wait_until, worker_thread

pytestmark = pytest.mark.usefixtures("committed_db")


def _device_and_key(**fields):
    device = DeviceFactory(**fields)
    _, key = device_key_issue(device=device)
    return device, key


def test_chunks_are_answered_in_order_with_their_ids_and_stored(stub, ingest_queue):
    device, key = _device_and_key()
    event_time = Timestamp()
    event_time.FromDatetime(timezone.now())
    chunks = [reading_chunk(seq) for seq in range(5)]
    chunks.append(
        pb.IngestChunk(
            id="events-1",
            events=[
                pb.Event(
                    event_type="fall_detected",
                    severity=3,
                    occurred_time=event_time,
                    detail_json='{"room": "hall"}',
                )
            ],
        )
    )

    results = list(stub.Stream(iter(chunks), metadata=api_key_metadata(key), timeout=30))

    assert [result.WhichOneof("chunk_id") for result in results] == ["seq"] * 5 + ["id"]
    assert [result.seq for result in results[:5]] == [0, 1, 2, 3, 4]
    assert results[5].id == "events-1"
    assert all(result.WhichOneof("outcome") == "message_id" for result in results)
    message_ids = {uuid.UUID(result.message_id) for result in results}
    assert len(message_ids) == 6
    with worker_thread(ingest_queue):
        assert wait_until(lambda: SensorReading.objects.filter(device=device).count() == 15, timeout=30)
        assert wait_until(lambda: DeviceEvent.objects.filter(device=device).count() == 1, timeout=30)
    assert set(IngestMessage.objects.values_list("message_id", flat=True)) == message_ids
    assert DeviceEvent.objects.get().detail == {"room": "hall"}


def test_a_chunk_with_a_bad_record_gets_its_field_errors_and_later_chunks_still_go(stub, ingest_queue):
    device, key = _device_and_key()
    bad = reading_chunk(1)
    bad.readings[2].ClearField("value")
    bad.readings[0].measured_at = "yesterday"
    chunks = [reading_chunk(0), bad, reading_chunk(2)]

    results = list(stub.Stream(iter(chunks), metadata=api_key_metadata(key), timeout=30))

    assert [result.WhichOneof("outcome") for result in results] == ["message_id", "errors", "message_id"]
    errors = results[1].errors
    assert {error.field: list(error.messages) for error in errors.fields} == {
        "readings.0.measured_at": ["Datetime has wrong format. Use ISO 8601, e.g. 2026-11-23T07:00:00Z."],
        "readings.2.value": ["This field is required."],
    }
    assert json.loads(errors.fields_json) == {
        "readings": {
            "0": {"measured_at": ["Datetime has wrong format. Use ISO 8601, e.g. 2026-11-23T07:00:00Z."]},
            "2": {"value": ["This field is required."]},
        }
    }
    assert queue_depth(ingest_queue.queue) == 2
    with worker_thread(ingest_queue):
        assert wait_until(lambda: SensorReading.objects.filter(device=device).count() == 6, timeout=30)


def test_a_chunk_sent_again_with_its_id_is_stored_once(stub, ingest_queue):
    device, key = _device_and_key()
    chunk = reading_chunk(7)

    first = list(stub.Stream(iter([chunk]), metadata=api_key_metadata(key), timeout=30))
    # Again on a new stream (a client resuming), and twice more on one stream.
    second = list(stub.Stream(iter([chunk, chunk]), metadata=api_key_metadata(key), timeout=30))

    assert len({result.message_id for result in first + second}) == 1
    with worker_thread(ingest_queue):
        assert wait_until(lambda: queue_depth(ingest_queue.queue) == 0, timeout=30)
        assert wait_until(lambda: IngestMessage.objects.count() == 1, timeout=30)
    assert SensorReading.objects.filter(device=device).count() == 3
    # Once stored, the ledger answers a copy without publishing it.
    third = list(stub.Stream(iter([chunk]), metadata=api_key_metadata(key), timeout=30))
    assert third[0].message_id == first[0].message_id
    assert queue_depth(ingest_queue.queue) == 0


def _status_of(stub, chunks, metadata) -> tuple[grpc.StatusCode, list, grpc.RpcError]:
    call = stub.Stream(iter(chunks), metadata=metadata, timeout=30)
    answered = []
    with pytest.raises(grpc.RpcError) as raised:
        for result in call:
            answered.append(result)
    return raised.value.code(), answered, raised.value


@pytest.mark.parametrize(
    "metadata", [(), (("authorization", "Api-Key nope.nope"),), (("authorization", "Bearer x"),)]
)
def test_a_missing_or_bad_key_is_unauthenticated(stub, ingest_queue, metadata):
    code, answered, _ = _status_of(stub, [reading_chunk(0)], metadata)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert answered == []
    assert queue_depth(ingest_queue.queue) == 0


def test_a_revoked_key_is_unauthenticated(stub, ingest_queue):
    device, key = _device_and_key()
    device.api_keys.update(revoked=True)
    code, _, error = _status_of(stub, [reading_chunk(0)], api_key_metadata(key))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in error.details()


def test_an_inactive_device_is_permission_denied(stub, ingest_queue):
    _, key = _device_and_key(status=DeviceStatus.INACTIVE)
    code, answered, _ = _status_of(stub, [reading_chunk(0)], api_key_metadata(key))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert answered == []
    assert queue_depth(ingest_queue.queue) == 0


def test_a_chunk_without_an_id_is_invalid_argument_after_the_earlier_answers(stub, ingest_queue):
    _, key = _device_and_key()
    code, answered, error = _status_of(
        stub, [reading_chunk(0), pb.IngestChunk(readings=reading_chunk(1).readings)], api_key_metadata(key)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "chunk_id" in error.details()
    assert [result.seq for result in answered] == [0]


def test_over_the_device_rate_is_resource_exhausted_with_retry_after(stub, ingest_queue, settings):
    settings.INGEST_DEVICE_RATE = "2/minute"
    device, key = _device_and_key()
    # Device ids start again in every test: forget what earlier tests counted for this one.
    caches["default"].delete(f"rate:device:{{{device.id}}}")
    code, answered, error = _status_of(stub, [reading_chunk(seq) for seq in range(4)], api_key_metadata(key))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Exactly the rate's two chunks were queued, and answered: chunks are counted in the
    # order sent, and the refusal ends the stream after the answers of those before it.
    assert queue_depth(ingest_queue.queue) == 2
    time.sleep(0.5)
    assert queue_depth(ingest_queue.queue) == 2
    assert [result.seq for result in answered] == [0, 1]
    assert int(dict(error.trailing_metadata())["retry-after"]) >= 1


def test_chunks_are_counted_against_the_rate_in_the_order_sent(stub, ingest_queue, settings):
    """Many chunks in flight at once: the rate's worth are admitted, and they are the first ones."""
    settings.INGEST_DEVICE_RATE = "25/minute"
    device, key = _device_and_key()
    caches["default"].delete(f"rate:device:{{{device.id}}}")

    code, answered, error = _status_of(stub, [reading_chunk(seq) for seq in range(60)], api_key_metadata(key))

    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert [result.seq for result in answered] == list(range(25))
    time.sleep(0.5)
    assert queue_depth(ingest_queue.queue) == 25


def test_a_broker_that_does_not_confirm_is_unavailable(stub, ingest_queue, settings):
    _, key = _device_and_key()
    broker_port = settings.RABBITMQ_PORT
    settings.RABBITMQ_PORT = 1  # nothing listens there
    publisher_reset()
    try:
        code, answered, error = _status_of(stub, [reading_chunk(0)], api_key_metadata(key))
    finally:
        settings.RABBITMQ_PORT = broker_port
        publisher_reset()
    assert code == grpc.StatusCode.UNAVAILABLE
    assert answered == []
    assert dict(error.trailing_metadata())["retry-after"] == "5"
    assert queue_depth(ingest_queue.queue) == 0


def test_a_broker_that_stops_confirming_mid_stream_leaves_only_confirmed_chunks_answered(
    stub, ingest_queue, settings
):
    _, key = _device_and_key()
    answered = []
    ten_answered = threading.Event()
    broker_port = settings.RABBITMQ_PORT
    settings.RABBITMQ_PUBLISH_TIMEOUT_SECONDS = 1.5

    with TcpProxy((settings.RABBITMQ_HOST, broker_port)) as proxy:

        def chunks():
            yield from (reading_chunk(seq) for seq in range(10))
            assert ten_answered.wait(30)
            proxy.stop_forwarding()  # the broker hears nothing more, and confirms nothing more
            yield from (reading_chunk(seq) for seq in range(10, 20))

        settings.RABBITMQ_PORT = proxy.port
        publisher_reset()
        try:
            with pytest.raises(grpc.RpcError) as raised:
                for result in stub.Stream(chunks(), metadata=api_key_metadata(key), timeout=60):
                    answered.append(result)
                    if len(answered) == 10:
                        ten_answered.set()
        finally:
            settings.RABBITMQ_PORT = broker_port
            publisher_reset()

    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert [result.seq for result in answered] == list(range(10))
    assert all(result.message_id for result in answered)
    assert queue_depth(ingest_queue.queue) == 10


def test_chunks_wait_for_their_confirms_together_not_one_after_another(stub, ingest_queue, settings):
    """Behind a link with a 0.1 s round trip, 40 chunks confirmed one at a time take 4 s."""
    _, key = _device_and_key()
    broker_port = settings.RABBITMQ_PORT
    with TcpProxy((settings.RABBITMQ_HOST, broker_port), delay=0.05) as proxy:
        settings.RABBITMQ_PORT = proxy.port
        publisher_reset()
        try:
            # The connection's set-up (a dozen round trips) is not what is measured.
            list(stub.Stream(iter([reading_chunk(100)]), metadata=api_key_metadata(key), timeout=60))
            started = time.monotonic()
            results = list(
                stub.Stream(
                    (reading_chunk(seq, count=50) for seq in range(40)),
                    metadata=api_key_metadata(key),
                    timeout=60,
                )
            )
            elapsed = time.monotonic() - started
        finally:
            settings.RABBITMQ_PORT = broker_port
            publisher_reset()
    assert [result.seq for result in results] == list(range(40))
    assert all(result.message_id for result in results)
    assert elapsed < 1.5, f"40 chunks took {elapsed:.2f} s"
    assert queue_depth(ingest_queue.queue) == 41
