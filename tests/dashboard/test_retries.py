"""The retry tiers page and "retry now", with the real worker on the real broker and database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from dashboard.models import AuditEntry
from ingest.models import IngestMessage, SensorReading
from tests.broker import publish_device_batch, queue_depth
from tests.factories import DeviceFactory, UserFactory, reading_record
from tests.retry_tiers import slow_retry_topology
from tests.workers import wait_until, worker_thread

pytestmark = pytest.mark.usefixtures("committed_db")

MISSING_DEVICE_ID = 987_654
TIER_DELAY = 600.0


@pytest.fixture
def slow_tiers(settings, broker_topology):
    with slow_retry_topology(settings, delay=TIER_DELAY) as topology:
        yield topology


def _client(role: str, username: str) -> Client:
    client = Client()
    client.force_login(UserFactory(username=username, role=role))
    return client


@pytest.fixture
def operator_client():
    return _client("Console operators", "olivia")


@pytest.fixture
def viewer_client():
    return _client("Console viewers", "victor")


def _waiting_in_tier(message_id) -> bool:
    return IngestMessage.objects.filter(
        message_id=message_id, retry_due_at__isnull=False, attempts=1
    ).exists()


def _poison(minute: int):
    """A batch for a device that does not exist (yet): the worker's insert fails, it is retried."""
    return publish_device_batch(device_id=MISSING_DEVICE_ID, readings=[reading_record(minute)])


def test_a_message_the_worker_sent_to_a_retry_tier_is_listed_with_its_error_and_due_time(
    slow_tiers, viewer_client
):
    poison = _poison(1)
    with worker_thread(slow_tiers):
        assert wait_until(lambda: _waiting_in_tier(poison.message_id))
        assert wait_until(lambda: queue_depth(slow_tiers.retry_queues[0]) == 1)
    row = IngestMessage.objects.get(message_id=poison.message_id)
    assert row.retry_due_at - row.last_failed_at == timedelta(seconds=TIER_DELAY)

    assert viewer_client.get("/console/overview/panel/").context["retrying_messages"] == 1
    response = viewer_client.get("/console/retries/")

    assert response.status_code == 200
    [tier] = response.context["retries"].tiers
    assert (tier.queue, tier.waiting, tier.on_broker) == (slow_tiers.retry_queues[0], 1, 1)
    [message] = tier.messages
    assert message.message_id == poison.message_id and message.attempts == 1
    assert "IntegrityError" in message.error_class or "ForeignKeyViolation" in message.error_class
    content = response.content.decode()
    assert f'data-message="{poison.message_id}"' in content
    assert "devices" in content  # the error names the missing device's table
    assert timezone.localtime(row.retry_due_at).strftime("%Y-%m-%d %H:%M:%S") in content
    assert "Retry now" not in content  # a viewer looks, does not act


def test_retry_now_has_the_worker_store_the_message_once_and_leaves_the_rest_waiting(
    slow_tiers, operator_client
):
    first, second = _poison(1), _poison(2)
    with worker_thread(slow_tiers):
        assert wait_until(lambda: _waiting_in_tier(first.message_id) and _waiting_in_tier(second.message_id))
        assert wait_until(lambda: queue_depth(slow_tiers.retry_queues[0]) == 2)
        DeviceFactory(id=MISSING_DEVICE_ID)  # the cause is fixed: the next try succeeds

        response = operator_client.post(f"/console/retries/{second.message_id}/retry-now/", follow=True)

        assert (
            f"Message {second.message_id} moved from {slow_tiers.retry_queues[0]}"
            in response.content.decode()
        )
        assert wait_until(
            lambda: (
                IngestMessage.objects.get(message_id=second.message_id).status
                == IngestMessage.Status.PROCESSED
            )
        )
    assert SensorReading.objects.filter(device_id=MISSING_DEVICE_ID).count() == 1
    # Its copy left the tier (no later duplicate); the one ahead of it is still there, waiting.
    assert queue_depth(slow_tiers.retry_queues[0]) == 1
    assert queue_depth(slow_tiers.due_queue) == 0
    waiting = IngestMessage.objects.get(message_id=first.message_id)
    assert waiting.status == IngestMessage.Status.PENDING and waiting.retry_due_at > timezone.now()
    audit = AuditEntry.objects.get(action="retried now")
    assert (audit.actor_name, audit.target) == ("olivia", f"message {second.message_id}")
    assert slow_tiers.retry_queues[0] in audit.detail and "devices" in audit.detail

    page = operator_client.get("/console/retries/").content.decode()
    assert f'data-message="{first.message_id}"' in page and f'data-message="{second.message_id}"' not in page
    # Stored: a second "retry now" finds nothing to move and says so.
    again = operator_client.post(f"/console/retries/{second.message_id}/retry-now/", follow=True)
    assert "is not waiting for a retry" in again.content.decode()
    assert AuditEntry.objects.filter(action="retried now").count() == 1


def test_a_viewer_cannot_retry_now(slow_tiers, viewer_client):
    poison = _poison(1)
    with worker_thread(slow_tiers):
        assert wait_until(lambda: _waiting_in_tier(poison.message_id))

    response = viewer_client.post(f"/console/retries/{poison.message_id}/retry-now/")

    assert response.status_code == 403
    assert wait_until(lambda: queue_depth(slow_tiers.retry_queues[0]) == 1)
    assert queue_depth(slow_tiers.due_queue) == 0
    assert not AuditEntry.objects.exists()


def test_retry_now_with_the_broker_unreachable_moves_nothing_and_says_so(
    slow_tiers, operator_client, settings
):
    poison = _poison(1)
    with worker_thread(slow_tiers):
        assert wait_until(lambda: _waiting_in_tier(poison.message_id))
    due_before = IngestMessage.objects.get(message_id=poison.message_id).retry_due_at
    settings.RABBITMQ_PORT = 1

    response = operator_client.post(f"/console/retries/{poison.message_id}/retry-now/", follow=True)

    assert "the broker is unreachable" in response.content.decode()
    assert b"unknown" in response.content  # the tier's count on the broker is not known
    settings.RABBITMQ_PORT = 5672
    assert queue_depth(slow_tiers.retry_queues[0]) == 1
    assert IngestMessage.objects.get(message_id=poison.message_id).retry_due_at == due_before
    assert not AuditEntry.objects.exists()


def test_retry_now_of_a_message_no_longer_in_its_tier_says_it_came_due(slow_tiers, operator_client):
    """The ledger still says waiting, the broker no longer has it there (it came due meanwhile)."""
    message_id = "0b7a2d7e-5d1c-4c1e-9a55-2f4f0b2c9d11"
    IngestMessage.objects.create(
        message_id=message_id,
        kind="device_batch",
        received_at=timezone.now(),
        attempts=1,
        last_error="x: y",
        last_failed_at=timezone.now(),
        retry_due_at=timezone.now() + timedelta(seconds=60),
    )

    response = operator_client.post(f"/console/retries/{message_id}/retry-now/", follow=True)

    assert "is no longer waiting in" in response.content.decode()
    assert not AuditEntry.objects.exists()


def test_a_message_out_of_attempts_leaves_the_retry_tiers(ingest_queue, viewer_client):
    """Dead-lettered (the test tiers wait 0.2-0.8 s): no longer listed as waiting for a retry."""
    from ingest.models import DeadLetter

    poison = _poison(1)
    with worker_thread(ingest_queue):
        assert wait_until(lambda: DeadLetter.objects.filter(message_id=poison.message_id).exists())
    row = IngestMessage.objects.get(message_id=poison.message_id)
    assert row.status == IngestMessage.Status.PENDING and row.retry_due_at is None and row.attempts == 4
    retries = viewer_client.get("/console/retries/").context["retries"]
    assert [tier.waiting for tier in retries.tiers] == [0, 0, 0] and retries.came_due_count == 0
