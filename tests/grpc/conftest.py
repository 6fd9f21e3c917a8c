"""A real IngestStream server in this process (on a free port), and a stub to call it."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from django.utils import timezone

from ingest.grpc import ingest_stream_pb2 as pb
from ingest.grpc import ingest_stream_pb2_grpc as pb_grpc
from ingest.grpc.server import grpc_server_start


@pytest.fixture
def grpc_server(ingest_queue):
    running = grpc_server_start(bind="127.0.0.1", port=0)
    yield running
    running.stop(grace=1)


@pytest.fixture
def stub(grpc_server):
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}")
    yield pb_grpc.IngestStreamStub(channel)
    channel.close()


def recent(minutes: float = 1) -> str:
    return (timezone.now() - timedelta(minutes=minutes)).isoformat()


def reading_chunk(
    seq: int, *, count: int = 3, metric: str = "heart_rate", start: float = 60
) -> pb.IngestChunk:
    return pb.IngestChunk(
        seq=seq,
        readings=[
            pb.Reading(
                metric=metric, value=start + index, unit="bpm", measured_at=recent(1 + seq + index / 100)
            )
            for index in range(count)
        ],
    )


def api_key_metadata(key: str) -> tuple:
    return (("authorization", f"Api-Key {key}"),)
