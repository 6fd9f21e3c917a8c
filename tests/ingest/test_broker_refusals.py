"""The broker refusing or unreachable: nothing is marked done that the broker did not confirm.

The refusals are real: RabbitMQ is told by a policy to nack every publish to one of this
run's queues (``broker_refusing_publishes_to``), or the publisher is pointed at a port
where no broker listens.
"""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from core.errors import ApplicationError
from ingest.broker.connection import open_connection
from ingest.broker.publisher import publisher_reset
from ingest.models import DeadLetter, DeadLetterAction, IngestMessage
from ingest.services.dead_letters import dead_letter_requeue, dead_letter_version
from tests.broker import (
    broker_refusing_publishes_to,
    management_api_available,
    publish_device_batch,
    publish_raw,
    queue_depth,
    queued_messages,
)
from tests.factories import DeadLetterFactory, DeviceFactory, UserFactory, reading_record
from tests.workers import wait_until, worker_thread

needs_policies = pytest.mark.skipif(
    not management_api_available(), reason="needs RabbitMQ's management API (RABBITMQ_MANAGEMENT_URL)"
)

MISSING_DEVICE_ID = 987_654


@contextmanager
def _broker_unreachable(settings, _topology):
    """The publisher points at a port where nothing listens (a stopped or unreachable broker)."""
    broker_port = settings.RABBITMQ_PORT
    settings.RABBITMQ_PORT = 1
    publisher_reset()
    try:
        yield
    finally:
        settings.RABBITMQ_PORT = broker_port
        publisher_reset()


@contextmanager
def _main_queue_refusing(settings, topology):
    with broker_refusing_publishes_to(topology.queue):
        yield


BROKER_FAULTS = {"unreachable": _broker_unreachable, "refusing": _main_queue_refusing}


def _dead_letter_of(device) -> DeadLetter:
    return DeadLetterFactory(device_id=device.id)


def _edited(dead: DeadLetter) -> str:
    """The same message with a corrected reading: only the records change."""
    body = json.loads(dead.body_text)
    body["readings"][0]["value"] = 71.0
    return json.dumps(body)


def _assert_untouched(dead: DeadLetter, topology) -> None:
    body_before = bytes(dead.body)
    dead.refresh_from_db()
    assert dead.status == DeadLetter.Status.DEAD
    assert bytes(dead.body) == body_before
    assert not dead.actions.exclude(action=DeadLetterAction.Action.RECORDED).exists()
    assert queue_depth(topology.queue) == 0


@pytest.mark.django_db
@needs_policies
@pytest.mark.parametrize("fault", sorted(BROKER_FAULTS))
@pytest.mark.parametrize("edit", [False, True], ids=["requeue", "edit-and-requeue"])
def test_a_requeue_the_broker_did_not_confirm_leaves_the_dead_letter_dead(
    ingest_queue, settings, fault, edit
):
    dead = _dead_letter_of(DeviceFactory())
    edited_body = _edited(dead) if edit else None

    with BROKER_FAULTS[fault](settings, ingest_queue):
        with pytest.raises(ApplicationError) as refused:
            dead_letter_requeue(dead_letter_id=dead.pk, actor=None, reason="fixed", edited_body=edited_body)

    assert refused.value.code == "broker_unavailable"
    assert "did not confirm" in refused.value.message
    _assert_untouched(dead, ingest_queue)
    # Once the broker takes messages again, the same dead letter can be requeued.
    dead_letter_requeue(dead_letter_id=dead.pk, actor=None, reason="fixed", edited_body=edited_body)
    dead.refresh_from_db()
    assert dead.status == DeadLetter.Status.REQUEUED
    assert queue_depth(ingest_queue.queue) == 1


@pytest.mark.django_db
@needs_policies
@pytest.mark.parametrize("edit", [False, True], ids=["requeue", "edit-and-requeue"])
def test_the_console_tells_the_operator_when_the_broker_refused_a_requeue(ingest_queue, settings, edit):
    dead = _dead_letter_of(DeviceFactory())
    client = Client()
    client.force_login(UserFactory(username="olivia", role="Console operators"))
    # An edit's confirm (its diff reviewed against this version), or a plain requeue.
    edit_confirm = {"edit": "1", "confirm": "1", "version": dead_letter_version(dead), "body": _edited(dead)}
    form = {"reason": "corrected the heart rate", **(edit_confirm if edit else {})}

    with broker_refusing_publishes_to(ingest_queue.queue):
        response = client.post(
            f"/console/failed/{dead.pk}/requeue/",
            {**form, "next": f"/console/failed/{dead.pk}/"},
            follow=True,
        )

    page = response.content.decode()
    # A refused edit shows the form again with what the operator typed (503: nothing was
    # queued); a plain requeue goes back to the page with the message.
    assert response.status_code == (503 if edit else 200)
    assert "broker did not confirm" in page
    if edit:
        assert "corrected the heart rate" in page and "71.0" in page
    assert "requeued (the broker confirmed it)" not in page
    _assert_untouched(dead, ingest_queue)


@pytest.mark.django_db
def test_a_message_the_broker_cannot_route_is_a_503_never_a_202(device_client, ingest_queue):
    """The publisher's channel is open and the queue's binding then disappears (an operator
    mistake, a broker restored without its bindings): the broker returns the message."""
    reading = {
        "metric": "heart_rate",
        "value": 72.5,
        "unit": "bpm",
        "measured_at": timezone.now().isoformat(),
    }

    def post():
        body = json.dumps({"readings": [reading]})
        return device_client.post("/api/v1/ingest/", data=body, content_type="application/json")

    assert post().status_code == 202  # the publisher now holds a declared, open channel
    queued_messages(ingest_queue.queue)
    admin = open_connection()
    channel = admin.channel()
    channel.queue_unbind(ingest_queue.queue, ingest_queue.exchange, ingest_queue.routing_key)
    try:
        reading["measured_at"] = (timezone.now() - timedelta(seconds=1)).isoformat()
        response = post()
    finally:
        channel.queue_bind(ingest_queue.queue, ingest_queue.exchange, ingest_queue.routing_key)
        admin.close()
    assert response.status_code == 503
    assert response.json()["code"] == "broker_unavailable"
    assert IngestMessage.objects.count() == 0  # the accept path writes nothing to the database
    assert queue_depth(ingest_queue.queue) == 0


# --- the worker's own publishes: retry tiers and the dead-letter queue ---------------


@pytest.mark.usefixtures("committed_db")
@needs_policies
def test_a_retry_the_broker_refuses_stays_on_the_main_queue(ingest_queue):
    """The worker acks a failed message only once its retry copy is confirmed."""
    poison = publish_device_batch(device_id=MISSING_DEVICE_ID, readings=[reading_record()])  # devices FK
    first_retry_queue = ingest_queue.retry_queue(1)

    with broker_refusing_publishes_to(first_retry_queue):
        with worker_thread(ingest_queue) as worker:
            # Each refused retry publish sends the message back to the main queue, where
            # it fails again: a second attempt proves it was not lost after the first.
            assert wait_until(lambda: worker.totals.retried >= 2, timeout=20), "the message vanished"
        assert queue_depth(ingest_queue.queue) == 1
        assert queue_depth(first_retry_queue) == 0

    # The broker takes retries again: the message goes its normal way to the dead letters.
    with worker_thread(ingest_queue):
        assert wait_until(lambda: DeadLetter.objects.filter(message_id=poison.message_id).exists())
    assert DeadLetter.objects.get().attempts == 4
    assert queue_depth(ingest_queue.queue) == 0


@pytest.mark.usefixtures("committed_db")
@needs_policies
def test_a_dead_letter_the_broker_refuses_stays_on_the_main_queue(ingest_queue):
    """An undecodable message goes to ``<q>.dead`` at once, but only with the broker's confirm."""
    message_id = publish_raw(b"\xff not a message", str(uuid.uuid4()))

    with broker_refusing_publishes_to(ingest_queue.dead_queue):
        with worker_thread(ingest_queue) as worker:
            assert wait_until(lambda: worker.totals.dead_lettered >= 2, timeout=20), "the message vanished"
        assert queue_depth(ingest_queue.queue) == 1
        assert DeadLetter.objects.count() == 0

    with worker_thread(ingest_queue):
        assert wait_until(lambda: DeadLetter.objects.filter(message_id=message_id).exists())
    assert bytes(DeadLetter.objects.get().body) == b"\xff not a message"
    assert queue_depth(ingest_queue.queue) == 0
    assert queue_depth(ingest_queue.dead_queue) == 0
