#!/usr/bin/env python
"""Readings/s stored end to end over MQTT (RabbitMQ's plugin) and over HTTP, in one run.

Starts a RabbitMQ node of its own with rabbitmq_mqtt and rabbitmq_auth_backend_http
(``deploy/cluster/rabbitmq.sh`` as a lone node, on ports of its own: the machine's broker
is never touched; needs root, like the script), the production web command (gunicorn
with gunicorn.conf.py, which also answers the broker's auth questions) and one
``consume_queue`` worker with MQTT_ENABLED, on a database and queues of its own. Then:

  mqtt  50 devices (--devices) connect at once with their serial and key (paho-mqtt,
        MQTT 3.1.1) and each publishes --readings-per-device bare readings, one reading
        per QoS 1 publish, to devices/<serial>/readings;
  http  the same devices post the same number of readings as single-reading requests
        (POST /api/v1/ingest/), one kept-alive connection per device, side by side.

Each phase is timed from its first send to the moment every reading is a row in
sensor_readings, and the figures are printed side by side (numbers, never asserted).

    .venv/bin/python bench/mqtt_bench.py                        # 50 devices x 100 readings
    .venv/bin/python bench/mqtt_bench.py --readings-per-device 400

BENCH_DATABASE_NAME, BENCH_QUEUE_NAME and BENCH_PORT move a run to a database, queues
and port of its own (defaults here: iot_care_mqtt_bench, bench-mqtt, 8793).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("BENCH_DATABASE_NAME", "iot_care_mqtt_bench")
os.environ.setdefault("BENCH_QUEUE_NAME", "bench-mqtt")
os.environ.setdefault("BENCH_PORT", "8793")

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ingest_bench import (  # noqa: E402
    PORT,
    PYTHON,
    bench_setup,
    bench_state_clear,
    ingest_post,
    start,
    start_gunicorn,
    stop,
    threads_run,
)

from tests.rabbitmq_cluster import RabbitCluster  # noqa: E402 - needs no Django


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def devices_prepare(count: int) -> list[tuple[str, str]]:
    """Empty the bench tables and queues; ``count`` active devices with a fresh key each."""
    from ingest.broker.topology import Topology
    from ingest.models import Device
    from ingest.mqtt.bridge import MqttBridgeHandler
    from ingest.services.devices import device_create, device_key_issue
    from ingest.worker.totals import WorkerTotals

    def bridge_queue(channel) -> list[str]:
        bridge = MqttBridgeHandler(topology=Topology.from_settings(), totals=WorkerTotals())
        bridge.declare(channel)  # the bridge queue is bound before the first publish
        return [bridge.queue]

    bench_state_clear(bridge_queue)
    logins = []
    for number in range(count):
        serial = f"BENCH-MQTT-{number:03d}"
        device = Device.objects.filter(serial_no=serial).first() or device_create(
            serial_no=serial, device_type="vital"
        )
        _, key = device_key_issue(device=device)
        logins.append((serial, key))
    return logins


def reading(base: datetime, number: int) -> dict:
    return {
        "metric": "heart_rate",
        "value": 60 + number % 40,
        "unit": "bpm",
        "measured_at": (base + timedelta(milliseconds=number)).isoformat(),
    }


def stored_readings() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sensor_readings")
        return cursor.fetchone()[0]


def wait_for_rows(expected: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stored_readings() >= expected:
            return time.monotonic()
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {expected} rows (have {stored_readings()})")


def run_mqtt(logins, per_device: int, mqtt_port: int, base: datetime) -> tuple[float, float]:
    """Every device publishes its readings; returns (all acknowledged, all stored) in seconds."""
    from tests.mqtt.node import DeviceConnection

    connections = [DeviceConnection(port=mqtt_port, serial_no=serial, key=key) for serial, key in logins]
    for connection in connections:
        if not connection.connect():
            raise SystemExit(f"{connection.serial_no}: login refused (CONNACK {connection.connack})")
    before = stored_readings()
    failures: list[str] = []

    def publish_all(index: int) -> None:
        connection = connections[index]
        topic = f"devices/{connection.serial_no}/readings"
        sent = [
            connection.client.publish(topic, json.dumps(reading(base, number)), qos=1)
            for number in range(per_device)
        ]
        for info in sent:
            info.wait_for_publish(120)
            if not info.is_published():
                failures.append(connection.serial_no)
                return

    try:
        started = time.monotonic()
        threads_run(publish_all, len(connections))
        acknowledged = time.monotonic()
        if failures:
            raise SystemExit(f"publishes not acknowledged for {sorted(set(failures))}")
        stored = wait_for_rows(before + len(logins) * per_device, timeout=600)
    finally:
        for connection in connections:
            connection.close()
    return acknowledged - started, stored - started


def run_http(logins, per_device: int, base: datetime) -> tuple[float, float]:
    """Every device posts its readings one per request; returns (all answered, all stored)."""
    before = stored_readings()
    refused: list[int] = []

    def post_all(index: int) -> None:
        _, key = logins[index]
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        for number in range(per_device):
            status = ingest_post(connection, json.dumps({"readings": [reading(base, number)]}).encode(), key)
            if status != 202:
                refused.append(status)

    started = time.monotonic()
    threads_run(post_all, len(logins))
    answered = time.monotonic()
    if refused:
        raise SystemExit(f"{len(refused)} requests refused: {sorted(set(refused))}")
    stored = wait_for_rows(before + len(logins) * per_device, timeout=600)
    return answered - started, stored - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=50, help="concurrent device connections")
    parser.add_argument("--readings-per-device", type=int, default=100)
    parser.add_argument("--web-workers", type=int, default=4)
    args = parser.parse_args()

    node = RabbitCluster.for_this_run(
        size=1, plugins=("rabbitmq_management", "rabbitmq_mqtt", "rabbitmq_auth_backend_http")
    )
    mqtt_port = free_port()
    secret = secrets.token_urlsafe(24)
    env = bench_setup(
        RABBITMQ_HOSTS=node.hosts,
        RABBITMQ_MANAGEMENT_URL=node.management_url,
        BROKER_AUTH_SECRET=secret,
        MQTT_ENABLED="true",
    )
    from tests.mqtt.node import MqttNode, mqtt_node_running

    with mqtt_node_running(MqttNode(node=node, mqtt_port=mqtt_port), web_port=PORT, secret=secret):
        logins = devices_prepare(args.devices)
        web = start_gunicorn(env, args.web_workers)
        worker = start([PYTHON, "manage.py", "consume_queue"], env)
        try:
            # Different instants per path: neither phase's rows are duplicates of the other's.
            day_ago = datetime.now(UTC) - timedelta(days=1)
            mqtt_acked, mqtt_stored = run_mqtt(logins, args.readings_per_device, mqtt_port, day_ago)
            http_answered, http_stored = run_http(
                logins, args.readings_per_device, day_ago + timedelta(hours=1)
            )
        finally:
            stop(web)
            stop(worker)
    total = args.devices * args.readings_per_device
    print(f"{args.devices} devices x {args.readings_per_device} readings = {total} readings per path")
    print(f"  mqtt (QoS 1, one reading per publish): acknowledged in {mqtt_acked:.2f} s, ", end="")
    print(f"stored in {mqtt_stored:.2f} s -> {total / mqtt_stored:,.0f} readings/s end to end")
    print(f"  http (one reading per request):        answered in {http_answered:.2f} s, ", end="")
    print(f"stored in {http_stored:.2f} s -> {total / http_stored:,.0f} readings/s end to end")
    print(f"  mqtt / http: {http_stored / mqtt_stored:.2f}x")


if __name__ == "__main__":
    main()
