"""Which broker nodes a process knows and in which order it tries them (pure logic)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from ingest.broker.connection import BrokerNode, NodeRotation, broker_nodes
from ingest.messages import FailureEnvelope


def test_without_a_list_the_single_host_setting_is_the_one_node(settings):
    settings.RABBITMQ_HOSTS = []
    settings.RABBITMQ_HOST, settings.RABBITMQ_PORT = "broker.internal", 5673
    assert broker_nodes() == (BrokerNode("broker.internal", 5673),)


def test_a_list_names_every_node_in_order_with_the_default_port_where_none_is_given(settings):
    settings.RABBITMQ_HOSTS = ["rabbit-1:5701", " rabbit-2 ", "[::1]:5703", "rabbit-1:5701"]
    settings.RABBITMQ_PORT = 5672
    assert broker_nodes() == (
        BrokerNode("rabbit-1", 5701),
        BrokerNode("rabbit-2", 5672),
        BrokerNode("::1", 5703),  # a repeated node is tried once
    )


@pytest.mark.parametrize("entry", ["rabbit:0", "rabbit:65536", "rabbit:amqp", ":5672", "[::1]5672"])
def test_a_malformed_node_is_refused_naming_the_setting_and_the_entry(settings, entry):
    settings.RABBITMQ_HOSTS = ["rabbit-1:5701", entry]
    with pytest.raises(ImproperlyConfigured, match=rf"RABBITMQ_HOSTS: {entry!r}".replace("[", r"\[")):
        broker_nodes()


def test_the_rotation_starts_at_the_node_last_reached_and_moves_past_a_failed_one(settings):
    settings.RABBITMQ_HOSTS = ["a:1", "b:2", "c:3"]
    rotation = NodeRotation()
    a, b, c = broker_nodes()
    assert rotation.ordered() == [a, b, c]

    rotation.reached(b)
    assert rotation.ordered() == [b, c, a]
    rotation.failed(b)
    assert rotation.ordered() == [c, a, b]
    # Another thread saw the same connection to b fail: c stays first.
    rotation.failed(b)
    assert rotation.ordered() == [c, a, b]
    rotation.failed(c)
    assert rotation.ordered() == [a, b, c]


def test_a_node_no_longer_listed_is_forgotten(settings):
    settings.RABBITMQ_HOSTS = ["a:1", "b:2"]
    rotation = NodeRotation()
    rotation.reached(BrokerNode("b", 2))
    settings.RABBITMQ_HOSTS = ["c:3", "d:4"]
    assert rotation.ordered() == [BrokerNode("c", 3), BrokerNode("d", 4)]


def test_a_message_the_broker_dead_lettered_itself_carries_the_brokers_reason():
    headers = {
        "x-death": [
            {"count": 1, "reason": "delivery_limit", "queue": "ingest", "routing-keys": ["ingest"]},
            {"count": 1, "reason": "expired", "queue": "ingest.retry.1s", "routing-keys": ["ingest.due"]},
        ]
    }
    envelope = FailureEnvelope.from_headers(headers)
    assert envelope.error_class == "rabbitmq.dead_lettered.delivery_limit"
    assert "from ingest:" in envelope.error_message and "x-delivery-limit" in envelope.error_message
    assert (envelope.original_queue, envelope.original_routing_key) == ("ingest", "ingest")


def test_the_workers_own_failure_wins_over_the_brokers_history():
    headers = {
        "x-error-class": "psycopg.errors.NumericValueOutOfRange",
        "x-death": [{"reason": "expired", "queue": "ingest.retry.1s"}],
    }
    assert FailureEnvelope.from_headers(headers).error_class == "psycopg.errors.NumericValueOutOfRange"
    assert FailureEnvelope.from_headers({"x-death": "not a list"}).error_class == ""
