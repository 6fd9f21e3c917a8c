"""What the broker holds and whether it answers: for the overview, ``/metrics`` and ``/readyz``.

The broker is read here, at most once per ``BROKER_READ_CACHE_SECONDS`` per process, so
that every reader (the overview's live panel, the Prometheus scrape, readiness probes)
shares one read and the broker is asked at most that often. A broker that could not be
read is ``None`` (unknown), never a queue of 0 messages or 0 consumers.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import pika.exceptions
from django.conf import settings

from ingest.broker.connection import open_connection
from ingest.broker.topology import Topology
from ingest.probe_cache import RecentResults

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueDepth:
    name: str
    role: str
    ready: int | None
    unacked: int | None
    consumers: int | None
    # A quorum queue's replicas (from the management API; None for a classic queue or
    # when the API could not be read): how many there are and how many are online.
    replicas: int | None = None
    replicas_online: int | None = None

    @property
    def replicas_missing(self) -> bool:
        return self.replicas is not None and (self.replicas_online or 0) < self.replicas


@dataclass(frozen=True)
class BrokerNodeStatus:
    name: str
    running: bool


# Rates are sampled by the management API only; they come with the same read as the depths.
MANAGEMENT_RATE_COLUMNS = {
    "publish": "message_stats.publish_details.rate",
    "deliver": "message_stats.deliver_get_details.rate",
    "ack": "message_stats.ack_details.rate",
}
_MANAGEMENT_COLUMNS = ",".join(
    [
        "name",
        "messages_ready",
        "messages_unacknowledged",
        "consumers",
        "members",
        "online",
        *MANAGEMENT_RATE_COLUMNS.values(),
    ]
)


def management_urls() -> list[str]:
    """The management API of every node, in preference order (``RABBITMQ_MANAGEMENT_URL``)."""
    return [url.strip().rstrip("/") for url in settings.RABBITMQ_MANAGEMENT_URL.split(",") if url.strip()]


def management_get(path: str) -> object | None:
    """GET ``/api/<path>`` from the first node whose management API answers; None if none does.

    Any node of a cluster answers for all of it, so a node that is down is only skipped.
    """
    credentials = f"{settings.RABBITMQ_USER}:{settings.RABBITMQ_PASSWORD}".encode()
    for base in management_urls():
        request = urllib.request.Request(f"{base}/api/{path}")
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as error:
            logger.info("management API at %s unavailable (%s)", base, error)
    return None


def _management_queue_stats_read(names: tuple[str, ...]) -> dict[str, dict] | None:
    vhost = urllib.parse.quote(settings.RABBITMQ_VHOST, safe="")
    queues = management_get(f"queues/{vhost}?columns={_MANAGEMENT_COLUMNS}")
    if not isinstance(queues, list):
        return None
    return {
        queue["name"]: queue for queue in queues if isinstance(queue, dict) and queue.get("name") in names
    }


_MANAGEMENT_READS = RecentResults[dict[str, dict] | None](seconds_setting="BROKER_READ_CACHE_SECONDS")


def management_queue_stats(names: list[str]) -> dict[str, dict] | None:
    """Per-queue stats (unacked, consumers, rates) from the RabbitMQ management API, when it
    is configured and answers; None otherwise. One HTTP read per BROKER_READ_CACHE_SECONDS
    serves the depths and the rates alike."""
    key = (tuple(sorted(set(names))), settings.RABBITMQ_MANAGEMENT_URL)
    return _MANAGEMENT_READS.get(key, lambda: _management_queue_stats_read(tuple(names)))


_NODE_READS = RecentResults[list[BrokerNodeStatus] | None](seconds_setting="BROKER_READ_CACHE_SECONDS")


def broker_node_statuses() -> list[BrokerNodeStatus] | None:
    """Every node of the broker's cluster and whether it runs (management API); None if unknown.

    A node that was stopped or killed stays listed by the others, not running.
    """
    return _NODE_READS.get(settings.RABBITMQ_MANAGEMENT_URL, _broker_node_statuses_read)


def _broker_node_statuses_read() -> list[BrokerNodeStatus] | None:
    nodes = management_get("nodes?columns=name,running")
    if not isinstance(nodes, list):
        return None
    return [
        BrokerNodeStatus(str(node.get("name")), bool(node.get("running")))
        for node in nodes
        if isinstance(node, dict) and node.get("name")
    ]


_BROKER_READS = RecentResults[list[QueueDepth] | None](seconds_setting="BROKER_READ_CACHE_SECONDS")


def queue_depths(topology: Topology | None = None) -> list[QueueDepth] | None:
    """Depth of the main, retry and dead-letter queues; None when the broker is unreachable.

    Ready messages and consumers come from AMQP (exact, immediate). Unacked messages are
    only known to the management API, which samples every few seconds: when it is not
    configured or not reachable they show as unknown. This is the one broker read of the
    web process: it asks the broker at most once per BROKER_READ_CACHE_SECONDS.
    """
    topology = topology or Topology.from_settings()
    return _BROKER_READS.get(topology, lambda: _queue_depths_probe(topology))


def broker_reachable() -> bool:
    """Whether the broker answered its latest (cached) read: what /readyz reports."""
    return queue_depths() is not None


def main_queue_consumers(queues: list[QueueDepth] | None) -> int | None:
    """Consumers of the main queue; None (unknown) when the broker could not be read."""
    main = next((queue for queue in queues or [] if queue.role == "main"), None)
    return None if main is None else main.consumers


def dead_letter_queue_waiting(queues: list[QueueDepth] | None) -> int | None:
    """Messages on the dead-letter queue not yet recorded: ready plus unacked (when known)."""
    dead = next((queue for queue in queues or [] if queue.role == "dead letters"), None)
    if dead is None or dead.ready is None:
        return None
    return dead.ready + (dead.unacked or 0)


def _queue_depths_probe(topology: Topology) -> list[QueueDepth] | None:
    roles = (
        [(topology.queue, "main")]
        + [(name, "retry") for name in topology.retry_queues]
        + [(topology.due_queue, "retry due")]
        + [(topology.dead_queue, "dead letters")]
    )
    counted: dict[str, tuple[int | None, int | None]] = {}
    try:
        broker = open_connection(role="monitoring")
        try:
            channel = broker.channel()
            for name, _ in roles:
                try:
                    declared = channel.queue_declare(name, passive=True)
                    counted[name] = (declared.method.message_count, declared.method.consumer_count)
                except pika.exceptions.ChannelClosedByBroker:  # not declared yet
                    channel = broker.channel()
                    counted[name] = (None, None)
        finally:
            if broker.is_open:
                broker.close()
    except (pika.exceptions.AMQPError, OSError):
        # Unreachable, or lost while counting: unknown as a whole, never partly counted.
        return None
    management = management_queue_stats([name for name, _ in roles]) or {}
    depths = []
    for name, role in roles:
        stats = management.get(name, {})
        members, online = stats.get("members"), stats.get("online")
        depths.append(
            QueueDepth(
                name,
                role,
                counted[name][0],
                stats.get("messages_unacknowledged"),
                counted[name][1],
                replicas=len(members) if isinstance(members, list) else None,
                replicas_online=len(online) if isinstance(online, list) else None,
            )
        )
    return depths
