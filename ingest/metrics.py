"""Prometheus metrics of the pipeline, served at /metrics (not public: token or loopback).

With several processes (gunicorn workers, consumers) on one machine, set
PROMETHEUS_MULTIPROC_DIR to a shared, emptied-at-start directory: /metrics then adds up
every process's counters (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import hmac
import os

from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import REGISTRY, GaugeMetricFamily

from ingest.broker.monitoring import queue_depths

REQUESTS = Counter(
    "iot_care_ingest_requests_total",
    "Ingest API requests by outcome (accepted or the refusal code).",
    ["outcome"],
)
PUBLISHED = Counter("iot_care_messages_published_total", "Messages the broker confirmed.", ["kind"])
CONSUMED = Counter(
    "iot_care_messages_consumed_total", "Messages the worker stored or found already stored.", ["result"]
)
ROWS = Counter("iot_care_rows_inserted_total", "Rows inserted into the customer's tables.", ["table"])
DEAD_LETTERED = Counter("iot_care_messages_dead_lettered_total", "Messages sent to the dead-letter queue.")
RETRIED = Counter("iot_care_messages_retried_total", "Messages sent to a retry tier.")
REQUEUED = Counter("iot_care_dead_letters_requeued_total", "Dead letters requeued (confirmed by the broker).")
RATE_LIMIT_UNAVAILABLE = Counter(
    "iot_care_rate_limit_unavailable_total",
    "Device requests let through unthrottled because the rate-limit cache (Redis) was unreachable.",
)
BATCH_SECONDS = Histogram(
    "iot_care_batch_seconds",
    "Time to store one batch (one transaction).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class QueueDepthCollector:
    """Queue depths read from the broker at scrape time (the shared, cached broker read).

    A broker that could not be read gives ``iot_care_broker_up 0`` and no queue samples:
    absent, never 0 messages or 0 consumers.
    """

    def describe(self):
        # Given so that registering does not call collect() (a broker round trip) at import.
        yield GaugeMetricFamily("iot_care_broker_up", "1 when the broker could be read, else 0.")
        yield GaugeMetricFamily(
            "iot_care_queue_messages_ready", "Messages ready in a queue.", labels=["queue", "role"]
        )
        yield GaugeMetricFamily("iot_care_queue_consumers", "Consumers of a queue.", labels=["queue", "role"])

    def collect(self):
        ready = GaugeMetricFamily(
            "iot_care_queue_messages_ready", "Messages ready in a queue.", labels=["queue", "role"]
        )
        consumers = GaugeMetricFamily(
            "iot_care_queue_consumers", "Consumers of a queue.", labels=["queue", "role"]
        )
        queues = queue_depths()
        yield GaugeMetricFamily(
            "iot_care_broker_up", "1 when the broker could be read, else 0.", value=int(queues is not None)
        )
        for queue in queues or []:
            if queue.ready is not None:
                ready.add_metric([queue.name, queue.role], queue.ready)
            if queue.consumers is not None:
                consumers.add_metric([queue.name, queue.role], queue.consumers)
        yield ready
        yield consumers


QUEUE_DEPTHS = QueueDepthCollector()
REGISTRY.register(QUEUE_DEPTHS)


def _registry() -> CollectorRegistry:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(QUEUE_DEPTHS)
    return registry


def _allowed(request) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(sent, token)
    return request.META.get("REMOTE_ADDR") in ("127.0.0.1", "::1")


def metrics_view(request):
    """Prometheus text format. Needs ``Authorization: Bearer $METRICS_TOKEN`` (or loopback without one)."""
    if not _allowed(request):
        return HttpResponseForbidden("metrics are not public\n", content_type="text/plain")
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
