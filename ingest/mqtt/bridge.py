"""The MQTT bridge: what devices published, taken from ``<q>.mqtt`` into the pipeline.

A handler for the generic ``BatchConsumer``, run by the worker (``consume_queue``) beside
the ingest consumer when MQTT_ENABLED. rabbitmq_mqtt publishes every QoS 1 message to
``amq.topic`` and confirms it to the device once it is in the durable ``<q>.mqtt`` queue
(bound to ``devices.*.readings`` and ``devices.*.events``). For each batch the bridge:

* validates each payload with the API's validation (``DeviceRecordsSerializer``, the
  topic's device as the sender; on a relay topic the gateway, each record naming the
  topic's device, as a gateway's records do on the API). A payload is the API's JSON body
  (``{"readings": [...], "events": [...]}``), or for the topic's kind one bare record
  (an object) or a list of them;
* publishes the valid ones, confirmed, to the main queue through the one accept path
  (``records_chunks_accept_once``), under content-derived ids: a publish the device sends
  again (QoS 1 redelivery, a retry after a lost PUBACK) has the same id, and the ledger
  stores it once;
* sends each invalid one, or one for a device that is not active, to ``<q>.dead`` with a
  ``FailureEnvelope`` whose error message carries the field errors: the dead-letter
  recorder keeps it in the ``DeadLetter`` table, shown in the console like any failure;
* and only then acks the batch. A broker or database outage leaves the batch unacked and
  waits (capped backoff): nothing is lost, and what was published twice is absorbed.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field

from django.db import DatabaseError, close_old_connections
from django.utils import timezone
from pika.adapters.blocking_connection import BlockingChannel

from core.errors import ApplicationError
from ingest import metrics
from ingest.broker.connection import Backoff
from ingest.broker.publisher import OutgoingMessage
from ingest.broker.topology import Topology, topology_declare
from ingest.messages import FailureEnvelope
from ingest.models import Device, DeviceStatus
from ingest.mqtt.payloads import MQTT_PUBLISH, MqttPayloadRefused, mqtt_publish_chunk
from ingest.mqtt.topics import BRIDGE_BINDINGS, MQTT_EXCHANGE, bridge_queue_name, device_topic_of
from ingest.services.ingestion import RecordsChunk, records_chunks_accept_once
from ingest.worker.consumer import ConsumerSession, Delivery
from ingest.worker.totals import WorkerTotals

logger = logging.getLogger(__name__)

MQTT_BRIDGE_BATCH_SIZE = 200
_DEAD_LETTER_NAMESPACE = uuid.UUID("0f8e3a5c-6d1b-4c2e-9a7f-3b5d2e1c4a90")


def _refused_message_id(delivery: Delivery) -> str:
    """The same refused publish (a QoS 1 resend) is the same dead letter, not a second one."""
    digest = hashlib.sha256(delivery.routing_key.encode() + b"\0" + delivery.body).hexdigest()
    return str(uuid.uuid5(_DEAD_LETTER_NAMESPACE, digest))


@dataclass
class MqttBridgeHandler:
    topology: Topology
    totals: WorkerTotals
    backoff: Backoff = field(default_factory=Backoff)
    not_before: float = 0.0

    @property
    def queue(self) -> str:
        return bridge_queue_name(self.topology)

    @property
    def queues(self) -> tuple[str, ...]:
        return (self.queue,)

    def declare(self, channel: BlockingChannel) -> None:
        # The main and dead queues first: the bridge publishes to both.
        topology_declare(channel=channel, topology=self.topology)
        channel.queue_declare(queue=self.queue, durable=True, arguments=self.topology.type_arguments)
        for binding in BRIDGE_BINDINGS:
            channel.queue_bind(queue=self.queue, exchange=MQTT_EXCHANGE, routing_key=binding)

    def consume_batch(
        self, deliveries: list[Delivery], session: ConsumerSession, upcoming: list[Delivery]
    ) -> int:
        if time.monotonic() < self.not_before:
            return 0
        close_old_connections()
        try:
            chunks, refused = self._sort(deliveries)
            if chunks:
                records_chunks_accept_once(chunks=chunks)
        except (DatabaseError, ApplicationError) as error:
            # An outage, never the messages' fault: nothing is acked, the batch comes again.
            delay = self.backoff.next_delay()
            self.not_before = time.monotonic() + delay
            logger.warning("mqtt bridge: %r; batch kept, trying again in %.1fs", error, delay)
            return 0
        for delivery, error in refused:
            self._dead_letter(delivery, error, publish_channel=session.publish_channel)
        self.backoff.reset()
        return len(deliveries)

    def _sort(
        self, deliveries: list[Delivery]
    ) -> tuple[list[RecordsChunk], list[tuple[Delivery, Exception]]]:
        """The valid payloads as chunks to publish, and the refused ones with their reasons."""
        topics = {delivery.delivery_tag: device_topic_of(delivery.routing_key) for delivery in deliveries}
        senders = {topic.sender_serial_no for topic in topics.values() if topic is not None}
        devices = {
            device.serial_no: device
            for device in Device.objects.filter(serial_no__in=senders, status=DeviceStatus.ACTIVE)
        }
        chunks: list[RecordsChunk] = []
        refused: list[tuple[Delivery, Exception]] = []
        for delivery in deliveries:
            topic = topics[delivery.delivery_tag]
            sender = devices.get(topic.sender_serial_no) if topic is not None else None
            try:
                if sender is None:
                    raise MqttPayloadRefused(
                        routing_key=delivery.routing_key,
                        fields={"device": ["Not the topic of an active device."]},
                    )
                chunks.append(
                    mqtt_publish_chunk(delivery.routing_key, delivery.body, topic=topic, sender=sender)
                )
            except MqttPayloadRefused as error:
                refused.append((delivery, error))
        return chunks, refused

    def _dead_letter(self, delivery: Delivery, error: Exception, *, publish_channel: BlockingChannel) -> None:
        """To ``<q>.dead`` at once and confirmed (a payload is no better on a second try)."""
        envelope = (
            FailureEnvelope.from_headers(delivery.headers)
            .after_failure(error, at=timezone.now())
            .dead(original_queue=self.queue, original_routing_key=delivery.routing_key)
        )
        outgoing = OutgoingMessage(
            _refused_message_id(delivery), delivery.body, MQTT_PUBLISH, envelope.applied_to(delivery.headers)
        )
        publish_channel.basic_publish(
            exchange="",
            routing_key=self.topology.dead_queue,
            body=outgoing.body,
            properties=outgoing.properties(),
            mandatory=True,
        )
        self.totals.dead_lettered += 1
        metrics.DEAD_LETTERED.inc()
        logger.error("mqtt bridge: %s dead-lettered: %s", delivery.routing_key, str(error)[:500])

    def tick(self, held: list[Delivery]) -> None:
        pass

    def close(self) -> None:
        pass
