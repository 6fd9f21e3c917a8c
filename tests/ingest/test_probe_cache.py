"""/readyz, the overview's queue depths and /metrics share one recent broker read."""

from __future__ import annotations

import re
import time
import urllib.request

import pika
import pytest
from django.test import Client
from rest_framework.test import APIClient

from ingest.broker import monitoring
from ingest.selectors.readiness import _DATABASE_CHECK
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker_connections(monkeypatch):
    """The names of the broker connections this process opens (each one really opens)."""
    opened: list[str] = []
    real = pika.BlockingConnection

    def counting(parameters, *args, **kwargs):
        # One node's parameters, or (open_connection) every node's, tried in order.
        first = parameters[0] if isinstance(parameters, list) else parameters
        opened.append(first.client_properties["connection_name"])
        return real(parameters, *args, **kwargs)

    monkeypatch.setattr(pika, "BlockingConnection", counting)
    _DATABASE_CHECK.clear()
    monitoring._BROKER_READS.clear()
    monitoring._MANAGEMENT_READS.clear()
    yield opened
    _DATABASE_CHECK.clear()
    monitoring._BROKER_READS.clear()
    monitoring._MANAGEMENT_READS.clear()


@pytest.fixture
def management_reads(monkeypatch):
    """The RabbitMQ management API's queue listings this process really requested."""
    requested: list[str] = []
    real = urllib.request.urlopen

    def counting(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else str(request)
        if "/api/queues/" in url:
            requested.append(url)
        return real(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", counting)
    return requested


@pytest.fixture
def broker_reads(monkeypatch, broker_connections):
    """How many times the broker was really read (the cached reader's probe ran)."""
    reads: list[float] = []
    real = monitoring._queue_depths_probe

    def counting(topology):
        reads.append(time.monotonic())
        return real(topology)

    monkeypatch.setattr(monitoring, "_queue_depths_probe", counting)
    return reads


@pytest.fixture
def operator_client():
    client = Client()
    client.force_login(UserFactory(role="Console operators"))
    return client


def test_rapid_readiness_probes_open_one_broker_connection(settings, broker_connections):
    settings.BROKER_READ_CACHE_SECONDS = 0.5
    client = APIClient()

    statuses = [client.get("/readyz").status_code for _ in range(50)]

    assert statuses == [200] * 50
    assert len(broker_connections) == 1
    time.sleep(0.6)
    assert client.get("/readyz").status_code == 200
    assert len(broker_connections) == 2  # past the cache's age the broker is asked again


def test_a_broker_outage_shows_once_the_cached_answer_is_old(settings, broker_connections):
    settings.BROKER_READ_CACHE_SECONDS = 0.5
    client = APIClient()
    assert client.get("/readyz").status_code == 200
    settings.RABBITMQ_PORT = 1
    time.sleep(0.6)
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["unreachable"] == ["broker"]


def test_readyz_metrics_and_the_overview_share_one_broker_read_within_its_age(
    settings, ingest_queue, operator_client, broker_reads, broker_connections, management_reads
):
    settings.BROKER_READ_CACHE_SECONDS = 5
    prober, scraper = APIClient(), Client()

    for _ in range(10):
        assert prober.get("/readyz").status_code == 200
        assert operator_client.get("/console/overview/panel/").status_code == 200
        metrics = scraper.get("/metrics")
        assert metrics.status_code == 200
    assert operator_client.get("/console/").status_code == 200

    assert len(broker_reads) == 1
    # Depths and the overview's per-queue rates come from one management API listing.
    assert len(management_reads) == 1, management_reads
    assert broker_connections == [name for name in broker_connections if "monitoring" in name]
    assert len(broker_connections) == 1
    text = metrics.content.decode()
    assert f'iot_care_queue_messages_ready{{queue="{ingest_queue.queue}",role="main"}}' in text
    assert "iot_care_broker_up 1.0" in text


def test_past_its_age_the_shared_read_is_made_again(settings, ingest_queue, broker_reads):
    settings.BROKER_READ_CACHE_SECONDS = 0.3
    client = APIClient()
    assert client.get("/readyz").status_code == 200
    assert Client().get("/metrics").status_code == 200
    time.sleep(0.4)
    assert Client().get("/metrics").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert len(broker_reads) == 2


def test_an_unreachable_broker_reads_as_unknown_never_as_zero(
    settings, ingest_queue, operator_client, broker_reads
):
    settings.RABBITMQ_PORT = 1  # nothing listens there

    assert monitoring.queue_depths() is None
    assert monitoring.main_queue_consumers(monitoring.queue_depths()) is None
    assert monitoring.dead_letter_queue_waiting(monitoring.queue_depths()) is None
    assert monitoring.broker_reachable() is False

    readiness = APIClient().get("/readyz")
    assert readiness.status_code == 503 and readiness.json()["unreachable"] == ["broker"]

    panel = operator_client.get("/console/overview/panel/")
    assert panel.status_code == 200
    content = panel.content.decode()
    assert panel.context["consumers"] is None
    assert re.search(r'id="consumers">\s*unknown\s*<', content)
    assert "queue depths, consumers and rates unknown" in content
    assert "on the queue: unknown" in content

    text = Client().get("/metrics").content.decode()
    assert "iot_care_broker_up 0.0" in text
    # No queue sample at all: a scrape must not read an unreachable broker as empty queues.
    assert not re.search(r"^iot_care_queue_(messages_ready|consumers)\{", text, re.MULTILINE)


def test_a_broker_lost_in_the_middle_of_the_read_is_unknown_not_an_error(
    monkeypatch, ingest_queue, operator_client, broker_reads
):
    """The connection opens, then the broker goes away while the queues are being counted."""

    def lost(*args, **kwargs):
        raise pika.exceptions.StreamLostError("Transport indicated EOF")

    monkeypatch.setattr(pika.adapters.blocking_connection.BlockingChannel, "queue_declare", lost)

    assert monitoring.queue_depths() is None
    readiness = APIClient().get("/readyz")
    assert readiness.status_code == 503 and readiness.json()["unreachable"] == ["broker"]
    panel = operator_client.get("/console/overview/panel/")
    assert panel.status_code == 200 and panel.context["consumers"] is None
