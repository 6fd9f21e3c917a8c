"""A generic batch consumer: one broker connection, batches, ack after the handler, backoff.

It knows nothing about what the messages mean. A handler (``BatchHandler``) declares
what it needs, is given each batch, and says how many of the batch's leading deliveries
are finished; only those are acked, with one ``basic_ack(multiple=True)``. What the
handler did not finish stays held and is offered again; a crash or a lost connection
leaves every unacked delivery to the broker, which delivers it again.

Batches are taken as they are ready, not waited for: a delivery is handled as soon as
the broker has nothing more buffered for a moment (``linger``), and the consumer keeps
collecting only while deliveries keep arriving, up to ``batch_size`` deliveries,
``batch_max_bytes`` of bodies or ``batch_max_wait`` seconds. Prefetch follows: about two
batches, counted in bytes as well as in messages. One message at low load is
handled within milliseconds; a full queue is drained in full batches.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from ingest.broker.connection import Backoff, connection_node, node_rotation, open_connection
from ingest.messages import message_id_of

logger = logging.getLogger(__name__)

BROKER_ERRORS = (pika.exceptions.AMQPError, OSError)


class StopRequested(Exception):
    """Raised inside a wait when a stop was asked for: leave without acking."""


@dataclass
class Delivery:
    delivery_tag: int
    message_id: str
    message_type: str | None
    headers: dict
    routing_key: str
    body: bytes


@dataclass
class ConsumerSession:
    """What a handler may use while one broker connection lasts."""

    connection: pika.BlockingConnection
    # Publisher confirms on: ``basic_publish`` returns once the broker has the message.
    publish_channel: BlockingChannel
    wait: Callable[[float], None]  # sleeps answering heartbeats; raises StopRequested


class BatchHandler(Protocol):
    """What a ``BatchConsumer`` drives."""

    queues: tuple[str, ...]

    def declare(self, channel: BlockingChannel) -> None:
        """Declare the queues it consumes (idempotent, run on every connect)."""

    def consume_batch(
        self, deliveries: list[Delivery], session: ConsumerSession, upcoming: list[Delivery]
    ) -> int:
        """Handle a batch; return how many leading deliveries are finished (to be acked).

        ``upcoming`` is what the consumer holds for the next batch: a handler may prepare
        it while it waits. An exception leaves the whole batch unacked. Broker errors end
        the connection.
        """

    def tick(self, held: list[Delivery]) -> None:
        """Called on every turn of the loop, busy or idle, with what is still held."""

    def close(self) -> None:
        """The consumer is done: release what the handler holds (threads, connections)."""


def _stable_message_id(properties, body: bytes) -> str:
    """The message's id; one is made up only for a message that carries none."""
    # The body is parsed only when the property is missing or not an id: parsing is the
    # worker's main cost, and the handler parses it again anyway.
    for candidate in (lambda: properties.message_id, lambda: message_id_of(body)):
        try:
            return str(uuid.UUID(str(candidate())))
        except (ValueError, TypeError):
            continue
    return str(uuid.uuid4())


@dataclass
class BatchConsumer:
    handler: BatchHandler
    role: str = "worker"
    batch_size: int = 200
    # Bodies per batch: bounds memory and transaction size when messages are large.
    batch_max_bytes: int = 4 * 1024 * 1024
    batch_max_wait: float = 0.2
    # How long the broker may stay silent before what is buffered is handled as a batch.
    linger: float = 0.002
    # Deliveries the broker may have in flight: two batches, so that the next one is on
    # its way while this one is stored.
    prefetch: int | None = None
    idle_poll: float = 0.5
    _stop_requested: bool = False
    _finish_when_idle: bool = False
    _prefetch_count: int = 0
    _consumer_tags: list[str] = field(default_factory=list)
    _broker_backoff: Backoff = field(default_factory=Backoff)

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def request_stop(self) -> None:
        """Finish the current batch and return (signal-handler safe)."""
        self._stop_requested = True

    def finish_when_idle(self) -> None:
        """Return at the first turn that finds nothing to do."""
        self._finish_when_idle = True

    def run(self, *, stop_when_idle: bool = False) -> None:
        """Consume until asked to stop (or, with ``stop_when_idle``, until nothing is left)."""
        if stop_when_idle:
            self._finish_when_idle = True
        try:
            while not self._stop_requested:
                try:
                    self._consume()
                    break
                except StopRequested:
                    break
                except BROKER_ERRORS as error:
                    # Unacked deliveries go back to their queue by themselves when the channel dies.
                    delay = self._broker_backoff.next_delay()
                    logger.warning("broker connection lost (%r); reconnecting in %.1fs", error, delay)
                    try:
                        self.wait(delay)
                    except StopRequested:
                        break  # asked to stop while the broker is away: nothing is held, just leave
        finally:
            self.handler.close()

    def _consume(self) -> None:
        broker = open_connection(role=self.role)
        try:
            self._consume_on(broker)
        except BROKER_ERRORS:
            # The node went away or broke the connection: the next attempt starts at the
            # node after it (a cluster keeps the queues on the others).
            node_rotation.failed(connection_node(broker))
            raise
        finally:
            if broker.is_open:
                broker.close()

    def _consume_on(self, broker: pika.BlockingConnection) -> None:
        channel = broker.channel()
        self.handler.declare(channel)
        # Small until the first batch shows how large the messages are (_prefetch_fit).
        self._prefetch_count = self.prefetch or max(1, self.batch_size // 4)
        channel.basic_qos(prefetch_count=self._prefetch_count)
        publish_channel = broker.channel()
        publish_channel.confirm_delivery()
        held: list[Delivery] = []
        self._subscribe(channel, held)
        self._broker_backoff.reset()  # connected: the next outage starts from a short wait
        logger.info("consuming from %s (batch %d)", ", ".join(self.handler.queues), self.batch_size)
        session = ConsumerSession(
            connection=broker,
            publish_channel=publish_channel,
            wait=lambda seconds: self.wait(seconds, broker=broker),
        )
        progressed = True
        while not self._stop_requested:
            self._fill(broker, held, wait_for_more=not progressed)
            if not held:
                self.handler.tick(held)
                if self._finish_when_idle:
                    return
                continue
            progressed = self._handle(channel, held, session)
            self.handler.tick(held)
            if not progressed and self._finish_when_idle and not held:
                return
        # Stop requested: what was delivered meanwhile is finished and acked, not dropped.
        while held and self._handle(channel, held, session):
            pass

    def _handle(self, channel: BlockingChannel, held: list[Delivery], session: ConsumerSession) -> bool:
        batch = self._next_batch(held)
        upcoming = self._next_batch(held[len(batch) :])
        finished = self.handler.consume_batch(batch, session, upcoming)
        if finished:
            channel.basic_ack(delivery_tag=batch[finished - 1].delivery_tag, multiple=finished > 1)
            del held[:finished]
            self._prefetch_fit(channel, batch, held)
        return finished > 0

    def _subscribe(self, channel: BlockingChannel, held: list[Delivery]) -> None:
        collector = self._collector(held)
        self._consumer_tags = [channel.basic_consume(queue, collector) for queue in self.handler.queues]

    def _prefetch_fit(self, channel: BlockingChannel, batch: list[Delivery], held: list[Delivery]) -> None:
        """Keep about two batches in flight, in bytes as well as in messages.

        RabbitMQ bounds prefetch by count only: with large messages, two batches of
        ``batch_size`` would hold far more than ``batch_max_bytes`` each in memory. A
        new prefetch applies only to new consumers (and a channel-wide one is not
        supported by quorum queues), so the consumers are cancelled and started again;
        what was delivered meanwhile is held, in delivery order, still unacked.
        """
        if self.prefetch is not None:
            return
        average = max(1, sum(len(delivery.body) for delivery in batch) // len(batch))
        fitting = max(1, min(self.batch_size, self.batch_max_bytes // average))
        wanted = 2 * fitting
        # Only a clear change is worth a round trip to the broker.
        if wanted * 2 // 3 <= self._prefetch_count <= wanted * 3 // 2:
            return
        channel.basic_qos(prefetch_count=wanted)
        self._prefetch_count = wanted
        pending = []
        for consumer_tag in self._consumer_tags:
            pending.extend(channel.basic_cancel(consumer_tag))
        # Later than everything held (not yet dispatched), and in tag order across the
        # queues: ``basic_ack(multiple=True)`` on a batch's last tag covers the batch only.
        collect = self._collector(held)
        for method, properties, body in sorted(pending, key=lambda message: message[0].delivery_tag):
            collect(channel, method, properties, body)
        self._subscribe(channel, held)

    def _next_batch(self, held: list[Delivery]) -> list[Delivery]:
        size, total = 0, 0
        for delivery in held[: self.batch_size]:
            if size and total + len(delivery.body) > self.batch_max_bytes:
                break
            total += len(delivery.body)
            size += 1
        return held[:size]

    @staticmethod
    def _collector(into: list[Delivery]) -> Callable:
        def on_message(_channel, method, properties, body):
            into.append(
                Delivery(
                    delivery_tag=method.delivery_tag,
                    message_id=_stable_message_id(properties, body),
                    message_type=properties.type,
                    headers=dict(properties.headers or {}),
                    routing_key=method.routing_key,
                    body=body,
                )
            )

        return on_message

    def _batch_full(self, held: list[Delivery]) -> bool:
        if len(held) >= self.batch_size:
            return True
        return sum(len(delivery.body) for delivery in held) >= self.batch_max_bytes

    def _fill(self, broker: pika.BlockingConnection, held: list[Delivery], *, wait_for_more: bool) -> None:
        """Collect deliveries while they keep coming; return as soon as the broker pauses.

        Nothing held: wait up to ``idle_poll`` for a first delivery. Something held that
        the handler could not finish last turn (it waits out an outage of its own): also
        wait, rather than spin. Otherwise keep reading while each ``linger`` brings more,
        up to a full batch or ``batch_max_wait``.
        """
        if not held or wait_for_more:
            before = len(held)
            broker.process_data_events(time_limit=self.idle_poll)
            if len(held) == before:
                return
        deadline = time.monotonic() + self.batch_max_wait
        while not self._stop_requested and not self._batch_full(held):
            before = len(held)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            broker.process_data_events(time_limit=min(self.linger, remaining))
            if len(held) == before:
                return  # the broker has nothing more buffered: take what is ready

    def wait(self, seconds: float, *, broker: pika.BlockingConnection | None = None) -> None:
        """Sleep in small steps so that a stop request is honoured within a second.

        Sleeping through the broker connection keeps its heartbeats answered.
        """
        deadline = time.monotonic() + seconds
        while not self._stop_requested:
            step = min(0.5, deadline - time.monotonic())
            if step <= 0:
                return
            if broker is not None and broker.is_open:
                broker.sleep(step)
            else:
                time.sleep(step)
        raise StopRequested
