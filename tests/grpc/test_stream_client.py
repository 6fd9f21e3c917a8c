"""import_file --to grpc://: a file streamed over IngestStream, resumed after the server died."""

from __future__ import annotations

import json
import signal
import threading

import pytest
from django.core.management import CommandError

from ingest.grpc.client import file_stream_import
from ingest.models import DeviceEvent, IngestMessage, SensorReading
from ingest.services.devices import device_key_issue
from tests.broker import queue_depth
from tests.factories import DeviceFactory
from tests.file_import import an_hour_ago, import_file_run
from tests.grpc.conftest import serve_grpc_started
from tests.web import free_port
from tests.workers import stop_worker_process, wait_until, worker_thread

pytestmark = pytest.mark.usefixtures("committed_db")


def _readings_file(path, count: int, *, extra_lines: tuple[str, ...] = ()) -> None:
    lines = [
        json.dumps(
            {"metric": "heart_rate", "value": 60 + n % 40, "unit": "bpm", "measured_at": an_hour_ago(n)}
        )
        for n in range(count)
    ]
    path.write_text("\n".join([*lines, *extra_lines]) + "\n")


def test_import_file_streams_over_grpc_and_a_rerun_stores_nothing_twice(tmp_path, grpc_server, ingest_queue):
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    path = tmp_path / "export.ndjson"
    _readings_file(
        path,
        25,
        extra_lines=(
            "{not json",
            json.dumps(
                {"event_type": "door_opened", "occurred_at": an_hour_ago(3), "detail": {"door": "front"}}
            ),
        ),
    )
    target = f"grpc://127.0.0.1:{grpc_server.port}"

    out, err = import_file_run(path, "--format", "ndjson", "--to", target, "--key", key, "--chunk", "10")

    assert "26 records in 3 chunks acknowledged, 0 chunks refused, 1 bad lines, 1 stream(s)" in out
    assert "line 26: not JSON" in err
    with worker_thread(ingest_queue):
        assert wait_until(lambda: SensorReading.objects.filter(device=device).count() == 25, timeout=30)
        assert wait_until(lambda: DeviceEvent.objects.filter(device=device).count() == 1, timeout=30)
        assert wait_until(lambda: IngestMessage.objects.count() == 3, timeout=30)

        out, _ = import_file_run(path, "--format", "ndjson", "--to", target, "--key", key, "--chunk", "10")

        assert "26 records in 3 chunks acknowledged" in out
        assert queue_depth(ingest_queue.queue) == 0  # the ledger knew all three: nothing published
    assert SensorReading.objects.count() == 25 and IngestMessage.objects.count() == 3


def test_import_file_over_grpc_with_a_bad_key_is_refused(tmp_path, grpc_server, ingest_queue):
    path = tmp_path / "export.ndjson"
    _readings_file(path, 3)
    with pytest.raises(CommandError, match="refused: UNAUTHENTICATED"):
        import_file_run(
            path, "--format", "ndjson", "--to", f"grpc://127.0.0.1:{grpc_server.port}", "--key", "x.y"
        )
    with pytest.raises(CommandError, match="expected grpc://HOST:PORT"):
        import_file_run(path, "--format", "ndjson", "--to", "http://127.0.0.1:1", "--key", "x.y")
    assert queue_depth(ingest_queue.queue) == 0


def test_the_client_resumes_after_the_server_was_killed_mid_stream_and_stores_everything_once(
    tmp_path, ingest_queue
):
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    path = tmp_path / "large.ndjson"
    _readings_file(path, 3000)  # 150 chunks of 20
    port = free_port()
    servers = [serve_grpc_started(ingest_queue, port)]
    killed = threading.Event()

    def kill_the_server_once(summary) -> None:
        if summary.chunks_acknowledged == 30 and not killed.is_set():
            killed.set()
            servers[0].send_signal(signal.SIGKILL)  # no goodbye: chunks in flight are lost
            servers[0].wait()
            servers.append(serve_grpc_started(ingest_queue, port))

    try:
        summary = file_stream_import(
            path=path,
            file_format="ndjson",
            target=f"grpc://127.0.0.1:{port}",
            key=key,
            chunk_size=20,
            window=16,
            progress=kill_the_server_once,
        )
    finally:
        for server in servers:
            stop_worker_process(server)

    assert killed.is_set()
    assert summary.streams_opened >= 2
    assert (summary.chunks_acknowledged, summary.records_acknowledged) == (150, 3000)
    with worker_thread(ingest_queue):
        assert wait_until(lambda: SensorReading.objects.filter(device=device).count() == 3000, timeout=60)
        assert wait_until(lambda: queue_depth(ingest_queue.queue) == 0, timeout=30)
    # One ledger row per chunk: every copy a resumed stream sent again had the same id.
    assert IngestMessage.objects.count() == 150
