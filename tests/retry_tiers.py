"""A topology of this run's own whose single retry tier waits long enough to be looked at."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ingest.broker.connection import open_connection
from ingest.broker.publisher import publisher_reset
from ingest.broker.topology import Topology, topology_declare, topology_delete


@contextmanager
def slow_retry_topology(settings, *, delay: float = 600.0) -> Iterator[Topology]:
    """Point the settings (the console, the publisher) at queues whose retry tier waits ``delay`` s.

    The test settings' tiers (0.2 s ...) hand a message back before a page can show it.
    """
    topology = Topology(
        queue=f"{settings.RABBITMQ_QUEUE_NAME}-slow",
        queue_type=settings.RABBITMQ_QUEUE_TYPE,
        max_length=settings.RABBITMQ_QUEUE_MAX_LENGTH,
        retry_delays=(delay,),
    )
    assert topology.queue.startswith("test-")
    settings.RABBITMQ_QUEUE_NAME = topology.queue
    settings.INGEST_RETRY_DELAYS_SECONDS = [delay]
    assert Topology.from_settings() == topology
    connection = open_connection()
    topology_declare(channel=connection.channel(), topology=topology)
    connection.close()
    try:
        yield topology
    finally:
        publisher_reset()
        connection = open_connection()
        topology_delete(channel=connection.channel(), topology=topology)
        connection.close()
