"""Broker topology: queue types, backpressure, names."""

from __future__ import annotations

import json
from datetime import timedelta

import pika.exceptions
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from ingest.broker.connection import open_connection
from ingest.broker.publisher import publisher_reset
from ingest.broker.topology import DEAD_QUEUE_DELIVERY_LIMIT, Topology, topology_declare, topology_delete
from ingest.models import DeadLetter, IngestMessage, SensorReading
from ingest.services.devices import device_key_issue
from tests.broker import publish_device_batch, queued_messages
from tests.factories import DeviceFactory
from tests.workers import wait_until, worker_thread


def test_retry_tiers_grow_and_the_last_repeats():
    topology = Topology(queue="q", retry_delays=(1.0, 5.0, 30.0))
    assert [topology.retry_delay(failures) for failures in (1, 2, 3, 4, 9)] == [1, 5, 30, 30, 30]
    assert topology.retry_queue(1) == "q.retry.1s"
    assert topology.queue_names == ["q", "q.retry.1s", "q.retry.5s", "q.retry.30s", "q.due", "q.dead"]


def test_an_unknown_queue_type_is_refused():
    with pytest.raises(ValueError, match="RABBITMQ_QUEUE_TYPE"):
        Topology(queue="q", queue_type="stream")


@pytest.fixture
def own_topology(settings, broker_topology):
    """Point the app at a topology of the test's own (other names, other arguments)."""
    made = []

    def use(suffix: str, **overrides) -> Topology:
        settings.RABBITMQ_QUEUE_NAME = f"{broker_topology.queue}-{suffix}"
        for name, value in overrides.items():
            setattr(settings, name, value)
        publisher_reset()
        topology = Topology.from_settings()
        connection = open_connection()
        topology_declare(channel=connection.channel(), topology=topology)
        connection.close()
        made.append(topology)
        return topology

    yield use
    publisher_reset()
    connection = open_connection()
    for topology in made:
        topology_delete(channel=connection.channel(), topology=topology)
    connection.close()


def _client_for(device) -> APIClient:
    _, key = device_key_issue(device=device)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def _post_reading(client, minutes_ago: int = 1):
    body = {
        "readings": [
            {
                "metric": "heart_rate",
                "value": 60,
                "measured_at": (timezone.now() - timedelta(minutes=minutes_ago)).isoformat(),
            }
        ]
    }
    return client.post("/api/v1/ingest/", data=json.dumps(body), content_type="application/json")


@pytest.mark.django_db
def test_a_full_queue_refuses_new_messages_and_the_api_answers_503(own_topology):
    topology = own_topology("full", RABBITMQ_QUEUE_MAX_LENGTH=1)
    client = _client_for(DeviceFactory())

    first, second = _post_reading(client, 1), _post_reading(client, 2)

    assert first.status_code == 202
    assert second.status_code == 503
    assert second["Retry-After"] == "5"
    # Only the confirmed message is queued; the refusal left nothing behind anywhere.
    [(properties, _body)] = queued_messages(topology.queue)
    assert properties.message_id == first.json()["id"]
    assert not IngestMessage.objects.exists()


@pytest.mark.usefixtures("committed_db")
def test_quorum_queues_carry_messages_and_retries_to_the_dead_letters(own_topology):
    topology = own_topology("quorum", RABBITMQ_QUEUE_TYPE="quorum")
    connection = open_connection()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="x-queue-type"):
        # The broker confirms the type: redeclaring as classic is refused.
        connection.channel().queue_declare(
            topology.queue,
            durable=True,
            arguments={**topology.queue_arguments()[topology.queue], "x-queue-type": "classic"},
        )
    connection.close()
    assert _post_reading(_client_for(DeviceFactory())).status_code == 202
    poison = publish_device_batch(
        device_id=987_654, readings=[{"metric": "x", "value": 1.0, "measured_at": timezone.now()}]
    )

    with worker_thread(topology):
        assert wait_until(lambda: DeadLetter.objects.exists())

    assert SensorReading.objects.count() == 1
    dead = DeadLetter.objects.get()
    assert (dead.message_id, dead.attempts) == (poison.message_id, 4)


@pytest.mark.django_db
def test_a_retry_that_comes_due_is_kept_even_when_the_main_queue_is_full(own_topology):
    from tests.broker import queue_depth
    from tests.workers import wait_until

    topology = own_topology("due", RABBITMQ_QUEUE_MAX_LENGTH=1)
    connection = open_connection()
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(topology.exchange, topology.routing_key, b"fills the main queue", mandatory=True)
    channel.basic_publish(
        "",
        topology.retry_queue(1),
        b"a retry",
        properties=pika.BasicProperties(delivery_mode=2),
        mandatory=True,
    )
    connection.close()

    # After its 0.2 s delay the retry goes to <q>.due, which has no limit: nothing dropped.
    assert wait_until(lambda: queue_depth(topology.due_queue) == 1, timeout=10)
    assert queue_depth(topology.queue) == 1
    assert queue_depth(topology.retry_queue(1)) == 0


def test_every_quorum_queue_names_its_delivery_limit_and_only_the_dead_queue_has_no_route_onwards():
    topology = Topology(queue="q", queue_type="quorum", retry_delays=(1.0, 5.0), delivery_limit=50)
    arguments = topology.queue_arguments()

    # No queue is left to a broker default (RabbitMQ 4.x: 20, and then dropped without a route).
    assert {name: queue["x-delivery-limit"] for name, queue in arguments.items()} == {
        "q": 50,
        "q.retry.1s": 50,
        "q.retry.5s": 50,
        "q.due": 50,
        "q.dead": DEAD_QUEUE_DELIVERY_LIMIT,
    }
    for consumed in ("q", "q.due"):
        assert arguments[consumed]["x-dead-letter-routing-key"] == "q.dead"
        assert arguments[consumed]["x-dead-letter-strategy"] == "at-least-once"
        assert arguments[consumed]["x-overflow"] == "reject-publish"  # what at-least-once needs
    assert "x-dead-letter-exchange" not in arguments["q.dead"]
    # Classic queues have no delivery limit: none is declared.
    assert all("x-delivery-limit" not in queue for queue in Topology(queue="q").queue_arguments().values())


def test_a_delivery_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="RABBITMQ_DELIVERY_LIMIT"):
        Topology(queue="q", queue_type="quorum", delivery_limit=0)


@pytest.mark.usefixtures("committed_db")
def test_a_message_returned_past_the_delivery_limit_is_recorded_as_a_dead_letter_with_the_brokers_reason(
    own_topology,
):
    """The broker's backstop ends where the product's own failures do: in the console."""
    topology = own_topology("limit", RABBITMQ_QUEUE_TYPE="quorum", RABBITMQ_DELIVERY_LIMIT=1)
    message = publish_device_batch(
        device_id=123_456, readings=[{"metric": "x", "value": 1.0, "measured_at": timezone.now()}]
    )
    # Taken and given back without an ack, as by a worker killed while holding it.
    connection = open_connection()
    channel = connection.channel()
    for _ in range(2):
        method, _properties, _body = channel.basic_get(topology.queue, auto_ack=False)
        assert method is not None
        channel.basic_nack(method.delivery_tag, requeue=True)
    connection.close()

    with worker_thread(topology):
        assert wait_until(lambda: DeadLetter.objects.exists())

    dead = DeadLetter.objects.get()
    assert dead.message_id == message.message_id
    assert dead.error_class == "rabbitmq.dead_lettered.delivery_limit"
    assert topology.queue in dead.error_message and "x-delivery-limit" in dead.error_message
