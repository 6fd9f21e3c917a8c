"""The gRPC server of ``manage.py serve_grpc``: limits, keepalive and a graceful stop."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from django.conf import settings

from ingest.grpc import ingest_stream_pb2_grpc as pb_grpc
from ingest.grpc.service import IngestStreamServicer


def server_options() -> list[tuple[str, int]]:
    max_bytes = settings.GRPC_MAX_MESSAGE_BYTES
    return [
        ("grpc.max_receive_message_length", max_bytes),
        ("grpc.max_send_message_length", max_bytes),
        # The server pings idle connections so that a dead peer (or a NAT that forgot the
        # flow) is noticed, and lets clients ping it as often as every 10 s.
        ("grpc.keepalive_time_ms", settings.GRPC_KEEPALIVE_SECONDS * 1000),
        ("grpc.keepalive_timeout_ms", settings.GRPC_KEEPALIVE_TIMEOUT_SECONDS * 1000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.so_reuseport", 0),
    ]


@dataclass
class RunningServer:
    server: grpc.Server
    servicer: IngestStreamServicer
    port: int

    def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let open streams finish within ``grace`` seconds, then cancel them."""
        grace = settings.GRPC_SHUTDOWN_GRACE_SECONDS if grace is None else grace
        self.server.stop(grace).wait()
        self.servicer.close()


def grpc_server_start(*, bind: str | None = None, port: int | None = None) -> RunningServer:
    """Start serving ``IngestStream`` (plain HTTP/2: TLS ends at the proxy); port 0 picks a free one."""
    bind = settings.GRPC_BIND if bind is None else bind
    port = settings.GRPC_PORT if port is None else port
    streams = settings.GRPC_MAX_STREAMS
    server = grpc.server(
        ThreadPoolExecutor(max_workers=streams, thread_name_prefix="grpc-stream"),
        options=server_options(),
        # Each open stream holds a thread; one more is refused with RESOURCE_EXHAUSTED.
        maximum_concurrent_rpcs=streams,
    )
    servicer = IngestStreamServicer()
    pb_grpc.add_IngestStreamServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"{bind}:{port}")
    if not bound:
        raise OSError(f"cannot listen on {bind}:{port}")
    server.start()
    return RunningServer(server=server, servicer=servicer, port=bound)
