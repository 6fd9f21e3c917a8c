"""One MQTT stack per module: a RabbitMQ node of its own with the MQTT plugin, gunicorn
answering its auth questions, and a ``consume_queue`` worker running the MQTT bridge."""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.broker.topology import Topology
from tests.mqtt.node import MqttNode, mqtt_node_planned, mqtt_node_running
from tests.web import gunicorn_server
from tests.workers import start_command_process, stop_worker_process, wait_until

BRIDGE_CLOCK_SKEW_SECONDS = 5


@dataclass
class MqttStack:
    node: MqttNode
    web_port: int
    secret: str
    topology: Topology
    worker_log: Path

    @property
    def mqtt_port(self) -> int:
        return self.node.mqtt_port


@pytest.fixture(scope="module")
def mqtt_stack(django_db_setup, django_db_blocker):
    topology = Topology.from_settings()
    planned = mqtt_node_planned()
    secret = secrets.token_urlsafe(24)
    environment = {
        "RABBITMQ_HOSTS": planned.hosts,
        "RABBITMQ_MANAGEMENT_URL": planned.node.management_url,
        "BROKER_AUTH_SECRET": secret,
        "TEST_MQTT_ENABLED": "true",
        # Short, so that a reading refused as ahead of the clock becomes valid within a test.
        "INGEST_MAX_CLOCK_SKEW": str(BRIDGE_CLOCK_SKEW_SECONDS),
    }
    with tempfile.TemporaryDirectory() as logs:
        worker_log = Path(logs) / "worker.log"
        with django_db_blocker.unblock(), gunicorn_server(topology, workers=2, **environment) as web_port:
            with mqtt_node_running(planned, web_port=web_port, secret=secret) as node:
                worker = start_command_process(topology, "consume_queue", log_file=worker_log, **environment)
                try:
                    # Until the bridge's queue is bound, the broker drops what devices publish.
                    bridge_consuming = f"consuming from {topology.queue}.mqtt "
                    assert wait_until(lambda: bridge_consuming in worker_log.read_text(), timeout=60), (
                        worker_log.read_text()
                    )
                    yield MqttStack(node, web_port, secret, topology, worker_log)
                finally:
                    stop_worker_process(worker)
