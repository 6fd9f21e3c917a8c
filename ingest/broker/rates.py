"""Per-queue message rates (publish, deliver, ack per second) from RabbitMQ's management API.

Only the management API samples rates (AMQP gives depths, never rates), so without it
every rate is unknown: ``queue_rates`` then returns None, never zeros. A queue the API
lists without ``message_stats`` has had no traffic in the sampled window: its rates are
0.0. They come with the depths' own management read (``management_queue_stats``), at most
once per ``BROKER_READ_CACHE_SECONDS`` per process.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.broker.monitoring import MANAGEMENT_RATE_COLUMNS, management_queue_stats
from ingest.broker.topology import Topology


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
    stats = management_queue_stats(names)
    if stats is None:
        return None
    return {
        name: QueueRates(*(_rate(queue, column) for column in MANAGEMENT_RATE_COLUMNS.values()))
        for name, queue in stats.items()
    }


def queue_rates(topology: Topology | None = None) -> dict[str, QueueRates] | None:
    """Rates of this topology's queues by name; None when the management API cannot be read.

    A queue missing from the answer (not declared yet) is missing from the result: its
    rates are unknown, not zero.
    """
    topology = topology or Topology.from_settings()
    return _management_queue_rates(topology.queue_names)
