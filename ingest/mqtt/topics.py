"""The MQTT topics devices publish to, as RabbitMQ routes them.

rabbitmq_mqtt publishes every MQTT message to ``amq.topic`` and turns the topic's ``/``
into the routing key's ``.``: ``devices/SN-1/readings`` arrives as ``devices.SN-1.readings``.
A serial holding ``.``, ``/``, ``+``, ``#`` or ``*`` has no topic of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.broker.topology import Topology

MQTT_EXCHANGE = "amq.topic"
TOPIC_ROOT = "devices"
READINGS = "readings"
EVENTS = "events"
RECORD_KINDS = (READINGS, EVENTS)
# What the bridge queue is bound with: every device's readings and events, nothing else.
BRIDGE_BINDINGS = tuple(f"{TOPIC_ROOT}.*.{kind}" for kind in RECORD_KINDS)
_NOT_IN_A_SERIAL = set("./+#*")


@dataclass(frozen=True)
class DeviceTopic:
    serial_no: str
    kind: str  # READINGS or EVENTS

    @property
    def routing_key(self) -> str:
        return f"{TOPIC_ROOT}.{self.serial_no}.{self.kind}"

    @property
    def mqtt_topic(self) -> str:
        return f"{TOPIC_ROOT}/{self.serial_no}/{self.kind}"


def device_topic_of(routing_key: str) -> DeviceTopic | None:
    """The device topic a routing key names, or None for anything else."""
    parts = routing_key.split(".")
    if len(parts) != 3 or parts[0] != TOPIC_ROOT or parts[2] not in RECORD_KINDS:
        return None
    serial_no = parts[1]
    if not serial_no or _NOT_IN_A_SERIAL & set(serial_no):
        return None
    return DeviceTopic(serial_no=serial_no, kind=parts[2])


def bridge_queue_name(topology: Topology) -> str:
    """The durable queue the bridge consumes: ``<RABBITMQ_QUEUE_NAME>.mqtt``."""
    return f"{topology.queue}.mqtt"
