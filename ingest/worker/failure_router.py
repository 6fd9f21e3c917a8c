"""Where a failed message goes next: a retry tier, or the dead-letter queue.

The router owns the retry policy (attempts counted in the message's ``FailureEnvelope``,
growing delays, the dead queue after ``max_attempts`` or at once for what can never be
read), publishes the message's copy with the broker's confirm, counts it, and notes the
failure in the ledger for the status API. The copy is confirmed before the consumer acks
the original: a crash in between leaves both, and the ledger makes the second harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import DatabaseError, close_old_connections
from django.utils import timezone
from pika.adapters.blocking_connection import BlockingChannel

from ingest import metrics
from ingest.broker.publisher import OutgoingMessage
from ingest.broker.topology import Topology
from ingest.messages import FailureEnvelope, PipelineMessage
from ingest.services.message_store import ingest_message_note_failure
from ingest.worker.consumer import Delivery
from ingest.worker.totals import WorkerTotals

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FailedDelivery:
    """A delivery that failed for its own reasons (never an outage)."""

    delivery: Delivery
    error: Exception
    # None: the body could not be decoded, and retrying cannot make it readable.
    message: PipelineMessage | None

    @property
    def retryable(self) -> bool:
        return self.message is not None


def _json_safe(value):
    """AMQP headers as JSON: RabbitMQ's x-death carries timestamps, clients may send bytes.

    Bytes that are not UTF-8 stay bytes: the dead-letter record keeps them losslessly.
    """
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


@dataclass
class FailureRouter:
    topology: Topology
    max_attempts: int
    totals: WorkerTotals

    def route(self, failed: FailedDelivery, *, publish_channel: BlockingChannel) -> None:
        """Publish the failed message to its next retry tier or to the dead letters, confirmed.

        A broker that refuses the copy raises (nack, unroutable, lost connection): the
        original is then not acked and comes back, never lost.
        """
        delivery = failed.delivery
        failed_at = timezone.now()
        envelope = FailureEnvelope.from_headers(delivery.headers).after_failure(failed.error, at=failed_at)
        attempts = envelope.attempts
        retry_due_at = None
        if failed.retryable and attempts < self.max_attempts:
            target = self.topology.retry_queue(attempts)
            retry_due_at = failed_at + timedelta(seconds=self.topology.retry_delay(attempts))
            self.totals.retried += 1
            metrics.RETRIED.inc()
            logger.warning(
                "message %s failed (attempt %d of %d: %s); retry in %gs",
                delivery.message_id,
                attempts,
                self.max_attempts,
                envelope.error_class,
                self.topology.retry_delay(attempts),
            )
        else:
            target = self.topology.dead_queue
            envelope = envelope.dead(
                original_queue=self.topology.queue, original_routing_key=delivery.routing_key
            )
            self.totals.dead_lettered += 1
            metrics.DEAD_LETTERED.inc()
            logger.error(
                "message %s dead-lettered after %d attempt(s): %s: %s",
                delivery.message_id,
                attempts,
                envelope.error_class,
                envelope.error_message[:500],
            )
        outgoing = OutgoingMessage(
            delivery.message_id,
            delivery.body,
            delivery.message_type,
            _json_safe(envelope.applied_to(delivery.headers)),
        )
        # The channel is in confirm mode: this returns once the broker has the copy.
        publish_channel.basic_publish(
            exchange="",
            routing_key=target,
            body=outgoing.body,
            properties=outgoing.properties(),
            mandatory=True,
        )
        self._ledger_note(
            failed,
            attempts,
            f"{envelope.error_class}: {envelope.error_message}",
            failed_at=failed_at,
            retry_due_at=retry_due_at,
        )

    @staticmethod
    def _ledger_note(
        failed: FailedDelivery,
        attempts: int,
        error: str,
        *,
        failed_at: datetime,
        retry_due_at: datetime | None,
    ) -> None:
        """Show the failure on the status API. Best effort: the broker's copy is what counts."""
        message = failed.message
        try:
            close_old_connections()
            ingest_message_note_failure(
                message_id=failed.delivery.message_id,
                kind=message.kind if message else (failed.delivery.message_type or ""),
                device_id=message.device_id if message else None,
                received_at=message.accepted_at if message else timezone.now(),
                readings=len(getattr(message, "readings", ())),
                events=len(getattr(message, "events", ())),
                attempts=attempts,
                error=error,
                failed_at=failed_at,
                retry_due_at=retry_due_at,
                relayed_devices=len(getattr(message, "relayed_device_ids", ())),
            )
        except DatabaseError:
            logger.warning("could not note the failure of %s in the ledger", failed.delivery.message_id)
