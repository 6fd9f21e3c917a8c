"""A real IngestStream server in this process (on a free port), and a stub to call it."""

from __future__ import annotations

import socket
import subprocess
from datetime import timedelta

import grpc
import pytest
from django.utils import timezone

from ingest.grpc import ingest_stream_pb2 as pb
from ingest.grpc import ingest_stream_pb2_grpc as pb_grpc
from ingest.grpc.server import grpc_server_start
from tests.workers import start_command_process, stop_worker_process, wait_until


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


def _accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def serve_grpc_started(topology, port: int) -> subprocess.Popen:
    """``manage.py serve_grpc`` on ``port``, once it accepts connections (stopped if it never does)."""
    process = start_command_process(topology, "serve_grpc", "--port", str(port))
    if not wait_until(lambda: _accepts_connections(port), timeout=60):
        stop_worker_process(process)
        raise AssertionError("serve_grpc did not start")
    return process


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
