"""Publishing with publisher confirms: a message counts as queued only once RabbitMQ says so."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

import pika
import pika.exceptions

from .connection import BrokerUnavailable, open_connection
from .topology import Topology, topology_declare

logger = logging.getLogger(__name__)

_CONNECTION_LOST = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ChannelClosed,
    pika.exceptions.ChannelWrongStateError,
    OSError,
)


@dataclass(frozen=True)
class OutgoingMessage:
    message_id: str
    body: bytes
    message_type: str
    headers: dict = field(default_factory=dict)

    def properties(self) -> pika.BasicProperties:
        """Persistent (survives a broker restart), with the stable id the ledger dedupes on."""
        return pika.BasicProperties(
            message_id=self.message_id,
            type=self.message_type,
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            headers=self.headers,
        )


class ConfirmedPublisher:
    """One broker connection per process, publishing persistent messages with confirms.

    pika's BlockingConnection is neither thread- nor fork-safe: a lock serialises
    publishes within a process and the connection is reopened after a fork.
    """

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel = None
        self._pid: int | None = None

    def publish(self, message: OutgoingMessage) -> None:
        """Publish to the main queue and wait for the broker's confirm.

        Raises BrokerUnavailable if the broker is unreachable, refuses the message (nack,
        e.g. the queue is full) or returns it as unroutable: then nothing was queued.
        """
        with self._lock:
            reused_connection = self._connection is not None and self._pid == os.getpid()
            try:
                self._publish_once(message)
            except _CONNECTION_LOST as error:
                self._discard_connection()
                if not reused_connection:
                    raise BrokerUnavailable(f"broker unreachable: {error!r}") from error
                # An idle connection may have been closed by the broker or a proxy: one
                # fresh attempt. A duplicate is harmless, the consumer dedupes by message id.
                try:
                    self._publish_once(message)
                except (*_CONNECTION_LOST, pika.exceptions.AMQPError) as retry_error:
                    self._discard_connection()
                    raise BrokerUnavailable(f"broker unreachable: {retry_error!r}") from retry_error
            except pika.exceptions.UnroutableError as error:
                raise BrokerUnavailable("broker returned the message as unroutable") from error
            except pika.exceptions.NackError as error:
                raise BrokerUnavailable("broker refused the message (nack)") from error
            except pika.exceptions.AMQPError as error:
                self._discard_connection()
                raise BrokerUnavailable(f"broker error: {error!r}") from error

    def close(self) -> None:
        with self._lock:
            self._discard_connection()

    def _publish_once(self, message: OutgoingMessage) -> None:
        channel = self._ensure_channel()
        channel.basic_publish(
            exchange=self.topology.exchange,
            routing_key=self.topology.routing_key,
            body=message.body,
            properties=message.properties(),
            mandatory=True,
        )

    def _ensure_channel(self):
        if self._pid != os.getpid():
            # Inherited from a parent process: never reuse its socket.
            self._connection = None
            self._channel = None
            self._pid = os.getpid()
        if self._connection is None or self._connection.is_closed:
            # Heartbeats are off: a blocking connection only answers them while in use, and
            # an idle web worker would be dropped. A dead socket is caught on the next publish.
            self._connection = open_connection(heartbeat=0, role="publisher")
            self._channel = self._connection.channel()
            topology_declare(channel=self._channel, topology=self.topology)
            self._channel.confirm_delivery()
        return self._channel

    def _discard_connection(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except pika.exceptions.AMQPError:
                logger.debug("ignoring error while closing a broken broker connection")


_publisher: ConfirmedPublisher | None = None
_publisher_lock = threading.Lock()


def get_publisher() -> ConfirmedPublisher:
    """The process-wide publisher for the configured topology."""
    global _publisher
    with _publisher_lock:
        if _publisher is None or _publisher.topology != Topology.from_settings():
            _publisher = ConfirmedPublisher(Topology.from_settings())
        return _publisher


_parallel_publishers: list[ConfirmedPublisher] = []


def publish_many_confirmed(
    messages: list[OutgoingMessage], *, parallel: int = 4
) -> tuple[set[str], BrokerUnavailable | None]:
    """Publish many messages over ``parallel`` connections at once, each with its confirm.

    A confirm is a round trip per message; several connections in flight multiply the
    rate (measured: 1 → 1,900/s, 4 → 3,600/s). Returns the ids the broker confirmed and
    the first error, if any: the caller acts only on what was confirmed.
    """
    global _parallel_publishers
    topology = Topology.from_settings()
    with _publisher_lock:
        if len(_parallel_publishers) != parallel or _parallel_publishers[0].topology != topology:
            for publisher in _parallel_publishers:
                publisher.close()
            _parallel_publishers = [ConfirmedPublisher(topology) for _ in range(parallel)]
        publishers = list(_parallel_publishers)
    confirmed: set[str] = set()
    errors: list[BrokerUnavailable] = []
    lock = threading.Lock()

    def publish_share(publisher: ConfirmedPublisher, share: list[OutgoingMessage]) -> None:
        for message in share:
            try:
                publisher.publish(message)
            except BrokerUnavailable as error:
                with lock:
                    errors.append(error)
                return
            with lock:
                confirmed.add(message.message_id)

    threads = [
        threading.Thread(target=publish_share, args=(publisher, messages[index::parallel]))
        for index, publisher in enumerate(publishers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return confirmed, (errors[0] if errors else None)


def publisher_reset() -> None:
    """Drop the process's publishers (settings changed, or a test wants fresh ones)."""
    global _publisher, _parallel_publishers
    with _publisher_lock:
        if _publisher is not None:
            _publisher.close()
        _publisher = None
        for publisher in _parallel_publishers:
            publisher.close()
        _parallel_publishers = []


__all__ = [
    "BrokerUnavailable",
    "ConfirmedPublisher",
    "OutgoingMessage",
    "get_publisher",
    "publish_many_confirmed",
    "publisher_reset",
]
