"""The worker as a real ``consume_queue`` process, with crashes and outages injected.

Each test publishes numbered messages carrying one reading and one event. Events have no
unique constraint in the customer's schema, so a message stored twice would show as an
extra event: exact event counts prove "exactly once".
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from ingest.models import DeadLetter, DeviceEvent, IngestMessage, SensorReading
from tests.broker import publish_device_batch, queue_consumers, queue_depth
from tests.factories import DeviceFactory
from tests.workers import (
    database_unavailable,
    start_command_process,
    start_worker_process,
    stop_worker_process,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("committed_db")


def _publish_numbered(device, start: int, count: int) -> None:
    base = timezone.now() - timedelta(hours=1)
    for number in range(start, start + count):
        at = base + timedelta(milliseconds=number)
        publish_device_batch(
            device_id=device.id,
            readings=[{"metric": "heart_rate", "value": float(number), "unit": "bpm", "measured_at": at}],
            events=[{"event_type": "motion", "severity": 0, "occurred_at": at, "detail": {"number": number}}],
        )


def _processed() -> int:
    return IngestMessage.objects.filter(status=IngestMessage.Status.PROCESSED).count()


def _assert_each_stored_once(count: int) -> None:
    assert _processed() == count
    assert SensorReading.objects.count() == count
    assert DeviceEvent.objects.count() == count
    numbers = {event.detail["number"] for event in DeviceEvent.objects.all()}
    assert numbers == set(range(count))


def _assert_nothing_failed(topology) -> None:
    assert DeadLetter.objects.count() == 0
    for queue in [*topology.retry_queues, topology.dead_queue]:
        assert queue_depth(queue) == 0


def test_kill_9_mid_batch_then_restart_stores_every_message_exactly_once(ingest_queue):
    device = DeviceFactory()
    total = 3000
    _publish_numbered(device, 0, total)
    worker = start_worker_process(ingest_queue, "--batch-size", "50")
    try:
        assert wait_until(lambda: _processed() >= 200, timeout=60)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    at_kill = _processed()
    assert at_kill < total, "the worker finished before it could be killed; publish more"

    restarted = start_worker_process(ingest_queue, "--stop-when-idle")
    output, _ = restarted.communicate(timeout=180)

    assert restarted.returncode == 0, output
    _assert_each_stored_once(total)
    _assert_nothing_failed(ingest_queue)
    assert queue_depth(ingest_queue.queue) == 0


def test_kill_9_while_a_batch_waits_for_the_database_loses_nothing(ingest_queue, tmp_path):
    """Deterministic "ack only after commit": the batch is held for as long as the database
    is down, so the kill always lands between delivery and commit."""
    device = DeviceFactory()
    log = tmp_path / "worker.log"
    worker = start_command_process(ingest_queue, "consume_queue", "--batch-size", "100", log_file=log)
    try:
        assert wait_until(lambda: queue_consumers(ingest_queue.queue) == 1, timeout=60)
        with database_unavailable():
            _publish_numbered(device, 0, 50)
            # Delivered and being stored: the worker waits for the database, holding them.
            assert wait_until(lambda: "database unavailable" in log.read_text(), timeout=30)
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
            # None was acked: all are ready on the queue again.
            assert wait_until(lambda: queue_depth(ingest_queue.queue) == 50, timeout=10), queue_depth(
                ingest_queue.queue
            )
            assert _processed() == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)

    restarted = start_worker_process(ingest_queue, "--stop-when-idle")
    output, _ = restarted.communicate(timeout=120)

    assert restarted.returncode == 0, output
    _assert_each_stored_once(50)
    _assert_nothing_failed(ingest_queue)
    assert queue_depth(ingest_queue.queue) == 0


def test_database_outage_pauses_the_worker_without_dead_letters(ingest_queue):
    device = DeviceFactory()
    _publish_numbered(device, 0, 100)
    worker = start_worker_process(ingest_queue)
    try:
        assert wait_until(lambda: _processed() == 100, timeout=60)
        with database_unavailable():
            _publish_numbered(device, 100, 100)
            time.sleep(3)
            assert worker.poll() is None, "the worker must wait, not die"
            assert _processed() == 100
        assert wait_until(lambda: _processed() == 200, timeout=60)
    finally:
        returncode, output = stop_worker_process(worker)
    assert returncode == 0, output
    assert "database unavailable" in output
    _assert_each_stored_once(200)
    _assert_nothing_failed(ingest_queue)


def test_sigterm_finishes_the_batch_and_exits_0_within_10_seconds(ingest_queue):
    device = DeviceFactory()
    total = 2000
    _publish_numbered(device, 0, total)
    worker = start_worker_process(ingest_queue, "--batch-size", "50")
    assert wait_until(lambda: _processed() >= 100, timeout=60)

    signalled = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=15)

    assert time.monotonic() - signalled < 10
    assert worker.returncode == 0, output
    assert "stopped:" in output
    # Nothing lost: what was not stored is back on the queue, unacked work returned.
    assert wait_until(lambda: _processed() + queue_depth(ingest_queue.queue) == total, timeout=10)


def test_sigterm_while_the_broker_is_unreachable_exits_0(ingest_queue):
    worker = start_command_process(ingest_queue, "consume_queue", RABBITMQ_PORT="1")
    time.sleep(2)  # refused at once, then waiting to reconnect

    signalled = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=15)

    assert time.monotonic() - signalled < 10
    assert worker.returncode == 0, output
    assert "reconnecting" in output and "stopped:" in output


def test_two_consumers_side_by_side_store_each_message_once(ingest_queue):
    device = DeviceFactory()
    total = 2000
    workers = [start_worker_process(ingest_queue, "--batch-size", "20") for _ in range(2)]
    try:
        _publish_numbered(device, 0, total)
        assert wait_until(lambda: _processed() == total, timeout=120)
    finally:
        results = [stop_worker_process(worker) for worker in workers]
    for returncode, output in results:
        assert returncode == 0, output
        # Side by side, not one idling while the other works.
        [consumed] = re.findall(r"stopped: (\d+) messages", output)
        assert int(consumed) > 0, output
    _assert_each_stored_once(total)


def _close_broker_connection_of(pid: int) -> None:
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "--no-table-headers", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    # The worker names its connection "iot_care worker pid=<pid>" (a client property).
    connection_pids = [
        line.split("\t", 1)[0] for line in listing.stdout.splitlines() if f"iot_care worker pid={pid}" in line
    ]
    assert connection_pids, f"no broker connection of worker {pid}"
    for connection_pid in connection_pids:
        subprocess.run(
            ["rabbitmqctl", "-q", "close_connection", connection_pid, "test: broker restart"],
            check=True,
            timeout=60,
            capture_output=True,
        )


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl on this machine")
def test_the_worker_reconnects_when_the_broker_drops_its_connection(ingest_queue):
    device = DeviceFactory()
    _publish_numbered(device, 0, 10)
    worker = start_worker_process(ingest_queue)
    try:
        assert wait_until(lambda: _processed() == 10, timeout=60)
        _close_broker_connection_of(worker.pid)
        _publish_numbered(device, 10, 10)
        assert wait_until(lambda: _processed() == 20, timeout=60)
    finally:
        returncode, output = stop_worker_process(worker)
    assert returncode == 0, output
    assert "reconnecting" in output
    _assert_each_stored_once(20)
