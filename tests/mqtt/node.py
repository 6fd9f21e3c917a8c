"""A lone RabbitMQ node with the MQTT plugin, asking a web tier of the caller's about devices.

Started through ``deploy/cluster/rabbitmq.sh`` (``tests/rabbitmq_cluster.py``) with ports,
names and a directory of its own: the machine's broker is never touched.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from tests.rabbitmq_cluster import RabbitCluster
from tests.web import free_port

MQTT_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq_mqtt.sh"
MQTT_PLUGINS = ("rabbitmq_management", "rabbitmq_mqtt", "rabbitmq_auth_backend_http")


def broker_auth_config(*, web_url: str, secret: str, mqtt_port: int) -> str:
    """The rabbitmq.conf lines of an MQTT node, as deploy/rabbitmq_mqtt.sh writes them for a
    broker: internal users first (the product's own AMQP user), then the web tier's
    endpoints for everyone else (the devices)."""
    return subprocess.run(
        [str(MQTT_SCRIPT), "block"],
        env={
            **os.environ,
            "BROKER_AUTH_WEB_URL": web_url,
            "BROKER_AUTH_SECRET": secret,
            "MQTT_PORT": str(mqtt_port),
            "MQTT_VHOST": "/",
        },
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout


@dataclass
class MqttNode:
    node: RabbitCluster
    mqtt_port: int

    @property
    def hosts(self) -> str:
        """RABBITMQ_HOSTS for the product's processes (AMQP as guest, the internal user)."""
        return self.node.hosts


def mqtt_node_planned() -> MqttNode:
    """A node's name and ports, chosen before the web tier it asks starts (it needs them)."""
    return MqttNode(node=RabbitCluster.for_this_run(size=1, plugins=MQTT_PLUGINS), mqtt_port=free_port())


@contextmanager
def mqtt_node_running(planned: MqttNode, *, web_port: int, secret: str) -> Iterator[MqttNode]:
    planned.node.extra_config = broker_auth_config(
        web_url=f"http://127.0.0.1:{web_port}", secret=secret, mqtt_port=planned.mqtt_port
    )
    try:
        planned.node.start()
        yield planned
    finally:
        planned.node.stop()
        assert not planned.node.base_dir.exists(), f"{planned.node.base_dir} was left behind"


class DeviceConnection:
    """A device's MQTT 3.1.1 session (paho-mqtt), logged in with its serial and key."""

    def __init__(self, *, port: int, serial_no: str, key: str, client_id: str | None = None) -> None:
        self.serial_no = serial_no
        self.connack: int | None = None
        self.disconnected = threading.Event()
        self._answered = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or serial_no, protocol=mqtt.MQTTv311
        )
        self.client.username_pw_set(serial_no, key)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.port = port

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack = reason_code.value
        self._answered.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._answered.set()
        self.disconnected.set()

    def connect(self, timeout: float = 15) -> bool:
        """True once the broker accepted the login; False if it refused it or hung up."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        self._answered.wait(timeout)
        return self.connack == 0 and not self.disconnected.is_set()

    def publish(self, topic: str, payload: bytes | str, *, timeout: float = 15) -> bool:
        """QoS 1: True once the broker acknowledged it (PUBACK), False if it did not in time."""
        info = self.client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):  # the connection went away meanwhile
            return False
        return info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
