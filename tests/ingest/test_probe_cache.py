"""/readyz, the overview's queue depths and /metrics reuse a recent broker probe."""

from __future__ import annotations

import time

import pika
import pytest
from django.test import Client
from rest_framework.test import APIClient

from ingest.broker.monitoring import _QUEUE_DEPTHS
from ingest.selectors import _READINESS
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker_connections(monkeypatch):
    """The names of the broker connections this process opens (each one really opens)."""
    opened: list[str] = []
    real = pika.BlockingConnection

    def counting(parameters, *args, **kwargs):
        opened.append(parameters.client_properties["connection_name"])
        return real(parameters, *args, **kwargs)

    monkeypatch.setattr(pika, "BlockingConnection", counting)
    _READINESS.clear()
    _QUEUE_DEPTHS.clear()
    yield opened
    _READINESS.clear()
    _QUEUE_DEPTHS.clear()


def test_rapid_readiness_probes_open_one_broker_connection(settings, broker_connections):
    settings.READINESS_CACHE_SECONDS = 0.5
    client = APIClient()

    statuses = [client.get("/readyz").status_code for _ in range(50)]

    assert statuses == [200] * 50
    assert [name for name in broker_connections if "readiness" in name] == broker_connections
    assert len(broker_connections) == 1
    time.sleep(0.6)
    assert client.get("/readyz").status_code == 200
    assert len(broker_connections) == 2  # past the cache's age the broker is asked again


def test_a_broker_outage_shows_once_the_cached_answer_is_old(settings, broker_connections):
    settings.READINESS_CACHE_SECONDS = 0.5
    client = APIClient()
    assert client.get("/readyz").status_code == 200
    settings.RABBITMQ_PORT = 1
    time.sleep(0.6)
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["unreachable"] == ["broker"]


def test_the_overview_panel_and_metrics_share_one_recent_queue_probe(
    settings, broker_connections, ingest_queue
):
    settings.QUEUE_DEPTH_CACHE_SECONDS = 5
    operator_client, scraper = Client(), Client()
    operator_client.force_login(UserFactory(role="Console operators"))

    for _ in range(20):
        assert operator_client.get("/console/overview/panel/").status_code == 200
        metrics = scraper.get("/metrics")
        assert metrics.status_code == 200

    assert (
        f'iot_care_queue_messages_ready{{queue="{ingest_queue.queue}",role="main"}}'
        in metrics.content.decode()
    )
    assert len([name for name in broker_connections if "console" in name]) == 1
