"""IngestStream through the real Caddy (TLS with its local CA) to serve_grpc over h2c."""

from __future__ import annotations

import io
import json
import socket
import ssl
import time
from datetime import timedelta

import grpc
import pytest
from django.core.management import call_command
from django.utils import timezone

from ingest.grpc import ingest_stream_pb2_grpc as pb_grpc
from ingest.models import SensorReading
from ingest.services.devices import device_key_issue
from tests.deploy.test_caddy import caddy_running
from tests.factories import DeviceFactory
from tests.grpc.conftest import api_key_metadata, reading_chunk, serve_grpc_started
from tests.web import free_port
from tests.workers import stop_worker_process, wait_until, worker_thread

pytestmark = pytest.mark.usefixtures("committed_db")


def _tls_answers(port: int, root_certificate) -> bool:
    try:
        context = ssl.create_default_context(cafile=str(root_certificate))
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            context.wrap_socket(sock, server_hostname="localhost").close()
        return True
    except (OSError, ssl.SSLError):
        return False


def test_streams_through_caddy_with_tls_reach_serve_grpc_over_h2c(tmp_path, ingest_queue):
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    grpc_port, https_port, grpc_https_port = free_port(), free_port(), free_port()
    server = serve_grpc_started(ingest_queue, grpc_port)
    try:
        with caddy_running(
            tmp_path,
            HTTPS_PORT=str(https_port),
            GRPC_HTTPS_PORT=str(grpc_https_port),
            UPSTREAM="127.0.0.1:9",  # the web tier is not part of this test
            GRPC_UPSTREAM=f"127.0.0.1:{grpc_port}",
            # A stream outlives the web's body timeout: it must not apply to gRPC's port.
            CADDY_READ_BODY_TIMEOUT="2s",
        ) as root_certificate:
            assert wait_until(lambda: _tls_answers(grpc_https_port, root_certificate), timeout=30)
            channel = grpc.secure_channel(
                f"localhost:{grpc_https_port}", grpc.ssl_channel_credentials(root_certificate.read_bytes())
            )
            stub = pb_grpc.IngestStreamStub(channel)

            def slow_chunks():
                for seq in range(4):
                    yield reading_chunk(seq)
                    time.sleep(1)  # four seconds in all: twice the body timeout above

            results = list(stub.Stream(slow_chunks(), metadata=api_key_metadata(key), timeout=30))
            channel.close()
            assert [result.seq for result in results] == [0, 1, 2, 3]
            assert all(result.message_id for result in results)

            # The file client over grpcs://, trusting Caddy's CA.
            path = tmp_path / "export.ndjson"
            at = timezone.now() - timedelta(hours=2)
            path.write_text(
                "".join(
                    json.dumps(
                        {
                            "metric": "steps",
                            "value": n,
                            "measured_at": (at + timedelta(seconds=n)).isoformat(),
                        }
                    )
                    + "\n"
                    for n in range(30)
                )
            )
            out = io.StringIO()
            call_command(
                "import_file",
                str(path),
                "--format",
                "ndjson",
                "--to",
                f"grpcs://localhost:{grpc_https_port}",
                "--key",
                key,
                "--ca-file",
                str(root_certificate),
                "--chunk",
                "10",
                stdout=out,
            )
            assert "30 records in 3 chunks acknowledged" in out.getvalue()
    finally:
        returncode, output = stop_worker_process(server)
    assert returncode == 0 and output.rstrip().endswith("stopped"), output
    with worker_thread(ingest_queue):
        assert wait_until(lambda: SensorReading.objects.filter(device=device).count() == 12 + 30, timeout=30)
