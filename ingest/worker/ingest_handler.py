"""The ingest batch handler: decode a batch, store it, isolate the messages at fault.

Given a batch of deliveries, it stores every message it can in one transaction
(``messages_store``), waits out database outages (the batch stays unacked meanwhile),
and returns an outcome: what was stored, and the deliveries that failed for their own
reasons with their errors. It publishes nothing: the ``FailureRouter`` decides where a
failed delivery goes.

The transaction runs on a thread of its own (with its own database connection) while
this thread decodes the batch the consumer already holds next: PostgreSQL stores one
batch while Python reads the next, instead of each waiting for the other. The call
still returns only once the batch committed, so the consumer acks after commit as ever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.db import DatabaseError, DataError, IntegrityError, close_old_connections, connection, connections

from config.observability import message_context
from ingest import metrics
from ingest.broker.connection import Backoff
from ingest.broker.topology import Topology, topology_declare
from ingest.messages import PipelineMessage, UndecodableMessage, message_decode
from ingest.services.message_store import StoreOutcome, messages_store
from ingest.worker.consumer import BROKER_ERRORS, ConsumerSession, Delivery, StopRequested
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


Decoded = PipelineMessage | UndecodableMessage


def _decoded(delivery: Delivery) -> Decoded:
    try:
        return message_decode(delivery.body)
    except UndecodableMessage as error:
        return error


def _batch_ids(deliveries: list[Delivery]) -> str:
    first, last = deliveries[0].message_id, deliveries[-1].message_id
    return first if len(deliveries) == 1 else f"{first}..{last}"


def _store_attempt(messages: list[PipelineMessage]) -> StoreOutcome:
    """One try, on the store thread; its connection is dropped after an outage."""
    close_old_connections()
    try:
        with metrics.BATCH_SECONDS.time():
            return messages_store(messages=messages)
    except DatabaseError as error:
        if not is_message_fault(error):
            connection.close()
        raise


@dataclass
class IngestBatchHandler:
    topology: Topology
    router: FailureRouter
    totals: WorkerTotals
    # Decoded ahead, by delivery tag (the delivery is kept to tell a redelivery apart).
    _ahead: dict[int, tuple[Delivery, Decoded]] = field(default_factory=dict)
    _store_thread: ThreadPoolExecutor | None = None

    @property
    def queues(self) -> tuple[str, ...]:
        # Retries that came due are consumed like the main queue: same batches, same acks.
        return (self.topology.queue, self.topology.due_queue)

    def declare(self, channel) -> None:
        topology_declare(channel=channel, topology=self.topology)
        self._ahead.clear()  # delivery tags start again on a new channel

    def consume_batch(
        self, deliveries: list[Delivery], session: ConsumerSession, upcoming: list[Delivery] = ()
    ) -> int:
        outcome = self.store_batch(deliveries, wait=session.wait, upcoming=upcoming)
        for failed in outcome.failed:
            with message_context(failed.delivery.message_id):
                self.router.route(failed, publish_channel=session.publish_channel)
        for stored in outcome.stored:
            self.totals.add(stored)
        self.totals.batches += 1
        return len(deliveries)

    def tick(self, held: list[Delivery]) -> None:
        pass

    def close(self) -> None:
        """Close the store thread's database connection and end the thread."""
        if self._store_thread is not None:
            self._store_thread.submit(connections.close_all).result()
            self._store_thread.shutdown()
            self._store_thread = None

    def store_batch(
        self, deliveries: list[Delivery], *, wait: Callable[[float], None], upcoming: list[Delivery] = ()
    ) -> BatchOutcome:
        """Store what can be stored; return it and the deliveries at fault, with their errors."""
        outcome = BatchOutcome()
        decoded: list[tuple[Delivery, PipelineMessage]] = []
        for delivery in deliveries:
            message = self._decode(delivery)
            if isinstance(message, UndecodableMessage):
                outcome.failed.append(FailedDelivery(delivery, message, None))
            else:
                decoded.append((delivery, message))
        if not decoded:
            self._decode_ahead(upcoming)
            return outcome
        started = time.monotonic()
        with message_context(_batch_ids([delivery for delivery, _ in decoded])):
            try:
                stored = self._store([message for _, message in decoded], wait, ahead=upcoming)
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

    def _decode(self, delivery: Delivery) -> Decoded:
        ahead = self._ahead.pop(delivery.delivery_tag, None)
        if ahead is not None and ahead[0] is delivery:
            return ahead[1]
        return _decoded(delivery)

    def _decode_ahead(self, upcoming: list[Delivery]) -> None:
        wanted = {delivery.delivery_tag for delivery in upcoming}
        for tag in [tag for tag in self._ahead if tag not in wanted]:
            del self._ahead[tag]  # no longer held (a redelivery after a reconnect)
        for delivery in upcoming:
            if delivery.delivery_tag not in self._ahead:
                self._ahead[delivery.delivery_tag] = (delivery, _decoded(delivery))

    def _store_one_by_one(
        self,
        decoded: list[tuple[Delivery, PipelineMessage]],
        wait: Callable[[float], None],
        outcome: BatchOutcome,
    ) -> None:
        for delivery, message in decoded:
            with message_context(delivery.message_id):
                try:
                    outcome.stored.append(self._store([message], wait))
                except Exception as error:
                    if not is_message_fault(error):
                        raise
                    outcome.failed.append(FailedDelivery(delivery, error, message))

    def _store(
        self, messages: list[PipelineMessage], wait: Callable[[float], None], *, ahead: list[Delivery] = ()
    ) -> StoreOutcome:
        """Store, waiting out database outages; an error of the messages' own is raised.

        While the store thread works, the next deliveries are decoded here.
        """
        if self._store_thread is None:
            self._store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-store")
        database_backoff = Backoff()
        while True:
            attempt = self._store_thread.submit(_store_attempt, messages)
            self._decode_ahead(ahead)
            try:
                return attempt.result()
            except DatabaseError as error:
                if is_message_fault(error):
                    raise
                delay = database_backoff.next_delay()
                logger.warning(
                    "database unavailable (%s); retrying in %.1fs",
                    str(error).strip().splitlines()[0] if str(error) else type(error).__name__,
                    delay,
                )
                wait(delay)
