"""The MQTT topics devices publish to, as RabbitMQ routes them.

rabbitmq_mqtt publishes every MQTT message to ``amq.topic`` and turns the topic's ``/``
into the routing key's ``.``: ``devices/SN-1/readings`` arrives as ``devices.SN-1.readings``.
A serial holding ``.``, ``/``, ``+``, ``#`` or ``*`` has no topic of its own.

A gateway relaying for a device of its household publishes to that device's topic with
its own serial appended: ``devices/<device>/readings/via/<gateway>``. The plugin does not
tell its subscribers who published, so the topic has to: the broker lets only the named
gateway publish there (``access``), and the bridge stores the records under the device
with the gateway as the message's sender, as the API does for a relayed record.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.broker.topology import Topology

MQTT_EXCHANGE = "amq.topic"
TOPIC_ROOT = "devices"
READINGS = "readings"
EVENTS = "events"
RECORD_KINDS = (READINGS, EVENTS)
VIA = "via"
# What the bridge queue is bound with: every device's readings and events, sent by the
# device itself or relayed by a gateway, nothing else.
BRIDGE_BINDINGS = tuple(
    binding
    for kind in RECORD_KINDS
    for binding in (f"{TOPIC_ROOT}.*.{kind}", f"{TOPIC_ROOT}.*.{kind}.{VIA}.*")
)
_NOT_IN_A_SERIAL = set("./+#*")


@dataclass(frozen=True)
class DeviceTopic:
    serial_no: str  # whose records they are
    kind: str  # READINGS or EVENTS
    via: str | None = None  # the gateway that relays them, if not the device itself

    @property
    def sender_serial_no(self) -> str:
        """Who published (the broker checked it): the relaying gateway, else the device."""
        return self.via or self.serial_no

    @property
    def routing_key(self) -> str:
        return ".".join(self._levels())

    @property
    def mqtt_topic(self) -> str:
        return "/".join(self._levels())

    def _levels(self) -> list[str]:
        levels = [TOPIC_ROOT, self.serial_no, self.kind]
        return [*levels, VIA, self.via] if self.via else levels


def _is_serial(text: str) -> bool:
    return bool(text) and not _NOT_IN_A_SERIAL & set(text)


def device_topic_of(routing_key: str) -> DeviceTopic | None:
    """The device topic a routing key names, or None for anything else."""
    parts = routing_key.split(".")
    if len(parts) not in (3, 5) or parts[0] != TOPIC_ROOT or parts[2] not in RECORD_KINDS:
        return None
    serial_no, via = parts[1], None
    if len(parts) == 5:
        if parts[3] != VIA or not _is_serial(parts[4]) or parts[4] == serial_no:
            return None
        via = parts[4]
    if not _is_serial(serial_no):
        return None
    return DeviceTopic(serial_no=serial_no, kind=parts[2], via=via)


def bridge_queue_name(topology: Topology) -> str:
    """The durable queue the bridge consumes: ``<RABBITMQ_QUEUE_NAME>.mqtt``."""
    return f"{topology.queue}.mqtt"
