"""Retry now: a message waiting in a retry tier is handed to the workers at once.

The message's body lives only on the broker (the ledger keeps no bodies), so the copy
that waits in the tier is the one moved: taken off the tier queue with ``basic_get``,
published with the broker's confirm to the due queue (where its TTL would have put it,
with the same properties and failure headers, so its attempts keep counting), and only
then acked. A crash in between leaves two copies; the ledger stores the message once
whichever arrives first, exactly as for any redelivery. The messages ahead of it in the
tier are held unacked while it is looked for and then returned (``basic_nack`` with
requeue): RabbitMQ keeps a requeued message's place in a classic queue and its original
expiry, so they come due when they would have. (A quorum queue counts each return
against its delivery limit; past it, the tier dead-letters the message to the due queue,
as its TTL would: it comes due early, never lost.) At most ``RETRY_NOW_SCAN_LIMIT`` are
looked at.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from uuid import UUID

import pika.exceptions
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from core.errors import ApplicationError
from dashboard.services import audit_record
from ingest.broker.connection import open_connection
from ingest.broker.topology import Topology
from ingest.models import IngestMessage

logger = logging.getLogger(__name__)

RETRY_NOW_SCAN_LIMIT = 10_000


@dataclass(frozen=True)
class RetryNowOutcome:
    message_id: UUID
    tier: str
    due_queue: str
    looked_at: int


def _tier_message_move(*, message_id: str, tier: str, due_queue: str) -> int | None:
    """Move the message's copy from ``tier`` to ``due_queue``; how many were looked at, None if absent."""
    connection = open_connection(role="console retry now")
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        passed_over = 0
        last_tag = None
        try:
            for looked_at in range(1, RETRY_NOW_SCAN_LIMIT + 1):
                method, properties, body = channel.basic_get(tier, auto_ack=False)
                if method is None:
                    return None
                if properties.message_id != message_id:
                    passed_over += 1
                    last_tag = method.delivery_tag
                    continue
                # Returns once the broker confirmed the copy; raises (nothing acked) if refused.
                channel.basic_publish(
                    exchange="", routing_key=due_queue, body=body, properties=properties, mandatory=True
                )
                channel.basic_ack(method.delivery_tag)
                return looked_at
            return None
        finally:
            if last_tag is not None and channel.is_open:
                channel.basic_nack(delivery_tag=last_tag, multiple=True, requeue=True)
    finally:
        if connection.is_open:
            connection.close()  # anything still unacked (after an error) is requeued by the broker


def retrying_message_retry_now(*, message_id: UUID, actor: AbstractBaseUser) -> RetryNowOutcome:
    """Hand a message waiting in a retry tier to the workers now; audited."""
    row = IngestMessage.objects.filter(
        message_id=message_id, status=IngestMessage.Status.PENDING, retry_due_at__isnull=False
    ).first()
    if row is None:
        raise ApplicationError(
            f"message {message_id} is not waiting for a retry (stored, dead-lettered or unknown)",
            code="not_found",
        )
    topology = Topology.from_settings()
    tier = topology.retry_queue(max(1, row.attempts))
    try:
        looked_at = _tier_message_move(message_id=str(message_id), tier=tier, due_queue=topology.due_queue)
    except pika.exceptions.ChannelClosedByBroker as error:
        raise ApplicationError(f"the broker refused: {error.reply_text}", code="conflict") from error
    except (pika.exceptions.AMQPError, OSError) as error:
        logger.warning("retry now of %s: broker unavailable (%r)", message_id, error)
        raise ApplicationError(
            "the broker is unreachable or refused the copy: nothing was moved, try again",
            code="broker_unavailable",
        ) from error
    if looked_at is None:
        raise ApplicationError(
            f"message {message_id} is no longer waiting in {tier}: it came due and is being retried",
            code="conflict",
        )
    # Unless the worker has meanwhile stored it, or noted a newer failure.
    IngestMessage.objects.filter(
        pk=row.pk, status=IngestMessage.Status.PENDING, retry_due_at=row.retry_due_at
    ).update(retry_due_at=timezone.now())
    audit_record(
        actor=actor,
        action="retried now",
        target=f"message {message_id}",
        detail=f"moved from {tier} to {topology.due_queue} after {row.attempts} failed attempt(s): "
        f"{row.last_error[:300]}",
    )
    return RetryNowOutcome(message_id, tier, topology.due_queue, looked_at)
