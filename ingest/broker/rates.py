"""Per-queue message rates (publish, deliver, ack per second) from RabbitMQ's management API.

Only the management API samples rates (AMQP gives depths, never rates), so without it
every rate is unknown: ``queue_rates`` then returns None, never zeros. A queue the API
lists without ``message_stats`` has had no traffic in the sampled window: its rates are
0.0. Read at most once per ``BROKER_READ_CACHE_SECONDS`` per process, like the depths.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from django.conf import settings

from ingest.broker.topology import Topology
from ingest.probe_cache import RecentResults

logger = logging.getLogger(__name__)

RATE_COLUMNS = {
    "publish": "message_stats.publish_details.rate",
    "deliver": "message_stats.deliver_get_details.rate",
    "ack": "message_stats.ack_details.rate",
}


@dataclass(frozen=True)
class QueueRates:
    """Messages per second, as the management API sampled them last."""

    publish: float
    deliver: float
    ack: float


def _rate(queue: dict, column: str) -> float:
    value = queue
    for part in column.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else 0.0


def _management_queue_rates(names: list[str]) -> dict[str, QueueRates] | None:
    base = settings.RABBITMQ_MANAGEMENT_URL
    if not base:
        return None
    vhost = urllib.parse.quote(settings.RABBITMQ_VHOST, safe="")
    columns = ",".join(["name", *RATE_COLUMNS.values()])
    request = urllib.request.Request(f"{base.rstrip('/')}/api/queues/{vhost}?columns={columns}")
    credentials = f"{settings.RABBITMQ_USER}:{settings.RABBITMQ_PASSWORD}".encode()
    request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            queues = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as error:
        logger.info("management API unavailable (%s): queue rates unknown", error)
        return None
    if not isinstance(queues, list):
        return None
    return {
        queue["name"]: QueueRates(*(_rate(queue, column) for column in RATE_COLUMNS.values()))
        for queue in queues
        if isinstance(queue, dict) and queue.get("name") in names
    }


_QUEUE_RATES = RecentResults[dict[str, QueueRates] | None](seconds_setting="BROKER_READ_CACHE_SECONDS")


def queue_rates(topology: Topology | None = None) -> dict[str, QueueRates] | None:
    """Rates of this topology's queues by name; None when the management API cannot be read.

    A queue missing from the answer (not declared yet) is missing from the result: its
    rates are unknown, not zero.
    """
    topology = topology or Topology.from_settings()
    return _QUEUE_RATES.get(
        (topology, settings.RABBITMQ_MANAGEMENT_URL),
        lambda: _management_queue_rates(topology.queue_names),
    )
