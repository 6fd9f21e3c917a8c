"""The ingest batch handler: decode a batch, store it, isolate the messages at fault.

Given a batch of deliveries, it stores every message it can in one transaction
(``messages_store``), waits out database outages (the batch stays unacked meanwhile),
and returns an outcome: what was stored, and the deliveries that failed for their own
reasons with their errors. It publishes nothing: the ``FailureRouter`` decides where a
failed delivery goes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import DatabaseError, DataError, IntegrityError, close_old_connections, connection

from config.observability import message_context
from ingest import metrics
from ingest.broker.topology import Topology, topology_declare
from ingest.messages import PipelineMessage, UndecodableMessage, message_decode
from ingest.services.message_store import StoreOutcome, messages_store
from ingest.worker.consumer import BROKER_ERRORS, Backoff, ConsumerSession, Delivery, StopRequested
from ingest.worker.failure_router import FailedDelivery, FailureRouter
from ingest.worker.totals import WorkerTotals

logger = logging.getLogger(__name__)


def is_message_fault(error: Exception) -> bool:
    """True for an error caused by the message itself (retry it, then dead-letter it).

    Only integrity and data errors (and non-database errors) are the message's fault. Any
    other database error (a read-only node after a failover, a schema being changed) is an
    outage like a lost connection: the batch stays unacked and is tried again.
    """
    if isinstance(error, DatabaseError):
        return isinstance(error, IntegrityError | DataError)
    return not isinstance(error, (StopRequested, *BROKER_ERRORS))


@dataclass
class BatchOutcome:
    stored: list[StoreOutcome] = field(default_factory=list)
    failed: list[FailedDelivery] = field(default_factory=list)


def _batch_ids(deliveries: list[Delivery]) -> str:
    first, last = deliveries[0].message_id, deliveries[-1].message_id
    return first if len(deliveries) == 1 else f"{first}..{last}"


@dataclass
class IngestBatchHandler:
    topology: Topology
    router: FailureRouter
    totals: WorkerTotals

    @property
    def queues(self) -> tuple[str, ...]:
        # Retries that came due are consumed like the main queue: same batches, same acks.
        return (self.topology.queue, self.topology.due_queue)

    def declare(self, channel) -> None:
        topology_declare(channel=channel, topology=self.topology)

    def consume_batch(self, deliveries: list[Delivery], session: ConsumerSession) -> int:
        outcome = self.store_batch(deliveries, wait=session.wait)
        for failed in outcome.failed:
            with message_context(failed.delivery.message_id):
                self.router.route(failed, publish_channel=session.publish_channel)
        for stored in outcome.stored:
            self.totals.add(stored)
        self.totals.batches += 1
        return len(deliveries)

    def tick(self, held: list[Delivery]) -> None:
        pass

    def store_batch(self, deliveries: list[Delivery], *, wait: Callable[[float], None]) -> BatchOutcome:
        """Store what can be stored; return it and the deliveries at fault, with their errors."""
        outcome = BatchOutcome()
        decoded: list[tuple[Delivery, PipelineMessage]] = []
        for delivery in deliveries:
            try:
                decoded.append((delivery, message_decode(delivery.body)))
            except UndecodableMessage as error:
                outcome.failed.append(FailedDelivery(delivery, error, None))
        if not decoded:
            return outcome
        started = time.monotonic()
        with message_context(_batch_ids([delivery for delivery, _ in decoded])):
            try:
                stored = self._store_waiting_out_outages([message for _, message in decoded], wait)
            except Exception as error:
                if not is_message_fault(error):
                    raise
                # One bad message must not hold back the others: store them one by one.
                logger.warning(
                    "batch failed (%s); storing its %d messages one by one",
                    type(error).__name__,
                    len(decoded),
                )
                self._store_one_by_one(decoded, wait, outcome)
                return outcome
        outcome.stored.append(stored)
        logger.info(
            "stored %d messages (%d readings, %d events, %d webhook events, %d already processed)"
            " in %.0f ms; message ids %s..%s",
            len(decoded),
            stored.readings_inserted,
            stored.events_inserted,
            stored.webhook_events_inserted,
            stored.messages_already_processed,
            (time.monotonic() - started) * 1000,
            decoded[0][0].message_id,
            decoded[-1][0].message_id,
        )
        return outcome

    def _store_one_by_one(
        self,
        decoded: list[tuple[Delivery, PipelineMessage]],
        wait: Callable[[float], None],
        outcome: BatchOutcome,
    ) -> None:
        for delivery, message in decoded:
            with message_context(delivery.message_id):
                try:
                    outcome.stored.append(self._store_waiting_out_outages([message], wait))
                except Exception as error:
                    if not is_message_fault(error):
                        raise
                    outcome.failed.append(FailedDelivery(delivery, error, message))

    @staticmethod
    def _store_waiting_out_outages(
        messages: list[PipelineMessage], wait: Callable[[float], None]
    ) -> StoreOutcome:
        """Store, waiting out database outages; an error of the messages' own is raised."""
        database_backoff = Backoff()
        while True:
            close_old_connections()
            try:
                with metrics.BATCH_SECONDS.time():
                    return messages_store(messages=messages)
            except DatabaseError as error:
                if is_message_fault(error):
                    raise
                connection.close()
                delay = database_backoff.next_delay()
                logger.warning(
                    "database unavailable (%s); retrying in %.1fs",
                    str(error).strip().splitlines()[0] if str(error) else type(error).__name__,
                    delay,
                )
                wait(delay)
