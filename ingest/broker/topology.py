"""Names and idempotent declaration of the exchanges and queues.

Everything is derived from ``RABBITMQ_QUEUE_NAME`` so that a test run can use its own
names (``settings.test``) without touching the real ones.
"""

from dataclasses import dataclass

from django.conf import settings
from pika.adapters.blocking_connection import BlockingChannel


@dataclass(frozen=True)
class Topology:
    queue: str

    @property
    def exchange(self) -> str:
        return f"{self.queue}.exchange"

    @property
    def routing_key(self) -> str:
        return self.queue

    @classmethod
    def from_settings(cls) -> "Topology":
        return cls(queue=settings.RABBITMQ_QUEUE_NAME)

    @property
    def queue_names(self) -> list[str]:
        return [self.queue]

    @property
    def exchange_names(self) -> list[str]:
        return [self.exchange]


def topology_declare(*, channel: BlockingChannel, topology: Topology) -> None:
    """Declare exchange, queue and binding; safe to call from every process at start."""
    channel.exchange_declare(exchange=topology.exchange, exchange_type="direct", durable=True)
    channel.queue_declare(queue=topology.queue, durable=True)
    channel.queue_bind(
        queue=topology.queue, exchange=topology.exchange, routing_key=topology.routing_key
    )


def topology_delete(*, channel: BlockingChannel, topology: Topology) -> None:
    """Remove everything ``topology_declare`` made (tests clean up their per-run names)."""
    for queue in topology.queue_names:
        channel.queue_delete(queue=queue)
    for exchange in topology.exchange_names:
        channel.exchange_delete(exchange=exchange)
