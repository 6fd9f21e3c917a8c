"""The ingest worker: consume messages in batches, store each batch in one transaction, ack.

``consume_queue`` is a thin command around ``IngestWorker``; tests drive it directly.
What it guarantees:

* a message is acked only after the transaction holding its rows committed, or after
  the broker confirmed its copy on a retry or dead-letter queue: a crash at any point
  leaves it to be delivered again, and the ledger makes a second delivery harmless;
* a database or broker outage is never the messages' fault: the batch stays unacked,
  the worker waits with capped exponential backoff and carries on where it was;
* a message that fails for its own reasons is isolated (the rest of its batch commits)
  and retried after growing delays, up to ``INGEST_MAX_ATTEMPTS``; then, or at once if
  it cannot even be decoded, it goes to the dead-letter queue, which this worker also
  consumes into the ``DeadLetter`` table.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

import pika
import pika.exceptions
from django.conf import settings
from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    close_old_connections,
    connection,
)
from django.utils import timezone

from config.observability import message_context
from ingest import metrics
from ingest.broker.connection import open_connection
from ingest.broker.publisher import OutgoingMessage
from ingest.broker.topology import Topology, topology_declare
from ingest.messages import (
    HEADER_ERROR_CLASS,
    HEADER_ERROR_MESSAGE,
    HEADER_FAILURES,
    HEADER_ORIGINAL_QUEUE,
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_TRACEBACK,
    PipelineMessage,
    UndecodableMessage,
    message_decode,
    message_id_of,
)
from ingest.models import DeadLetter, IngestMessage
from ingest.services.dead_letters import (
    DeadMessage,
    dead_letter_record_isolated,
    dead_letter_recorder_check_in,
    dead_letters_record,
)
from ingest.services.message_store import StoreOutcome, messages_store

logger = logging.getLogger(__name__)

BROKER_ERRORS = (pika.exceptions.AMQPError, OSError)
RECORDER_NAME = f"{socket.gethostname()}:{os.getpid()}"
TRACEBACK_MAX_CHARS = 16_000
DEAD_LETTER_PREFETCH = 100


class StopRequested(Exception):
    """Raised inside a wait when SIGTERM/SIGINT arrived: leave without acking."""


def _is_message_fault(error: Exception) -> bool:
    """True for an error caused by the message itself (retry it, then dead-letter it).

    Only integrity and data errors (and non-database errors) are the message's fault. Any
    other database error (a read-only node after a failover, a schema being changed) is an
    outage like a lost connection: the batch stays unacked and is tried again.
    """
    if isinstance(error, DatabaseError):
        return isinstance(error, IntegrityError | DataError)
    return not isinstance(error, (StopRequested, *BROKER_ERRORS))


@dataclass
class Delivery:
    delivery_tag: int
    message_id: str
    message_type: str | None
    headers: dict
    routing_key: str
    body: bytes


@dataclass
class Backoff:
    """Capped exponential backoff: 0.5 s, 1 s, 2 s ... up to ``cap``."""

    initial: float = 0.5
    cap: float = 30.0
    attempt: int = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.initial * (2**self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class WorkerTotals:
    batches: int = 0
    messages: int = 0
    readings_inserted: int = 0
    events_inserted: int = 0
    webhook_events_inserted: int = 0
    duplicates_skipped: int = 0
    retried: int = 0
    dead_lettered: int = 0
    dead_letters_recorded: int = 0

    def add(self, outcome: StoreOutcome) -> None:
        metrics.CONSUMED.labels(result="stored").inc(outcome.messages_stored)
        metrics.CONSUMED.labels(result="already_processed").inc(outcome.messages_already_processed)
        metrics.ROWS.labels(table="sensor_readings").inc(outcome.readings_inserted)
        metrics.ROWS.labels(table="device_events").inc(outcome.events_inserted)
        metrics.ROWS.labels(table="webhook_events").inc(outcome.webhook_events_inserted)
        self.messages += outcome.messages_stored + outcome.messages_already_processed
        self.readings_inserted += outcome.readings_inserted
        self.events_inserted += outcome.events_inserted
        self.webhook_events_inserted += outcome.webhook_events_inserted
        self.duplicates_skipped += outcome.messages_already_processed


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


def _stable_message_id(properties, body: bytes) -> str:
    """The message's id; one is made up only for a message that carries none."""
    for candidate in (properties.message_id, message_id_of(body)):
        try:
            return str(uuid.UUID(str(candidate)))
        except (ValueError, TypeError):
            continue
    return str(uuid.uuid4())


@dataclass
class IngestWorker:
    topology: Topology
    batch_size: int = 200
    batch_max_wait: float = 0.2
    max_attempts: int = 5
    idle_poll: float = 0.5
    totals: WorkerTotals = field(default_factory=WorkerTotals)
    _stop_requested: bool = False
    _broker_backoff: Backoff = field(default_factory=Backoff)

    def request_stop(self) -> None:
        """Ask the worker to finish its current batch and return (signal-handler safe)."""
        self._stop_requested = True

    # --- connection lifecycle --------------------------------------------------------

    def run(self, *, stop_when_idle: bool = False) -> WorkerTotals:
        """Consume until asked to stop (or, with ``stop_when_idle``, until the queues are empty)."""
        while not self._stop_requested:
            try:
                self._consume(stop_when_idle=stop_when_idle)
                break
            except StopRequested:
                break
            except BROKER_ERRORS as error:
                # Unacked messages go back to the queue by themselves when the channel dies.
                delay = self._broker_backoff.next_delay()
                logger.warning("broker connection lost (%r); reconnecting in %.1fs", error, delay)
                try:
                    self._wait(delay)
                except StopRequested:
                    break  # asked to stop while the broker is away: nothing is held, just leave
        return self.totals

    def _consume(self, *, stop_when_idle: bool) -> None:
        broker = open_connection(role="worker")
        try:
            consumer = broker.channel()
            topology_declare(channel=consumer, topology=self.topology)
            consumer.basic_qos(prefetch_count=self.batch_size)
            publisher = broker.channel()
            publisher.confirm_delivery()
            dead_consumer = broker.channel()
            dead_consumer.basic_qos(prefetch_count=DEAD_LETTER_PREFETCH)

            pending: list[Delivery] = []
            dead_pending: list[Delivery] = []
            consumer.basic_consume(self.topology.queue, self._collector(pending))
            # Retries that came due: same channel, same batches, same acks.
            consumer.basic_consume(self.topology.due_queue, self._collector(pending))
            self._broker_backoff.reset()  # connected: the next outage starts from a short wait
            dead_consumer.basic_consume(self.topology.dead_queue, self._collector(dead_pending))
            logger.info("consuming from %s (batch %d)", self.topology.queue, self.batch_size)

            session = _Session(self, broker, consumer, publisher, dead_consumer)
            while not self._stop_requested:
                self._fill(broker, pending)
                idle = not pending and not dead_pending
                if pending:
                    batch, pending[:] = pending[: self.batch_size], pending[self.batch_size :]
                    session.process(batch)
                if dead_pending:
                    session.record_dead_letters(dead_pending)
                session.recorder_check_in(dead_pending)
                if idle and stop_when_idle:
                    return
            # Stop requested: what was delivered meanwhile is finished and acked, not dropped.
            if pending:
                session.process(pending)
        finally:
            if broker.is_open:
                broker.close()

    @staticmethod
    def _collector(into: list[Delivery]) -> Callable:
        def on_message(_channel, method, properties, body):
            into.append(
                Delivery(
                    delivery_tag=method.delivery_tag,
                    message_id=_stable_message_id(properties, body),
                    message_type=properties.type,
                    headers=dict(properties.headers or {}),
                    routing_key=method.routing_key,
                    body=body,
                )
            )

        return on_message

    def _fill(self, broker: pika.BlockingConnection, pending: list[Delivery]) -> None:
        """Wait until a full batch is buffered, or ``batch_max_wait`` after its first message."""
        if not pending:
            broker.process_data_events(time_limit=self.idle_poll)
            if not pending:
                return
        deadline = time.monotonic() + self.batch_max_wait
        while len(pending) < self.batch_size and not self._stop_requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            broker.process_data_events(time_limit=remaining)

    def _wait(self, seconds: float, *, broker: pika.BlockingConnection | None = None) -> None:
        """Sleep in small steps so that a stop request is honoured within a second.

        Sleeping through the broker connection keeps its heartbeats answered.
        """
        deadline = time.monotonic() + seconds
        while not self._stop_requested:
            step = min(0.5, deadline - time.monotonic())
            if step <= 0:
                return
            if broker is not None and broker.is_open:
                broker.sleep(step)
            else:
                time.sleep(step)
        raise StopRequested


@dataclass
class _Session:
    """One broker connection's worth of work: the channels and what to do with a batch."""

    worker: IngestWorker
    broker: pika.BlockingConnection
    consumer: object
    publisher: object
    dead_consumer: object
    dead_letter_backoff: Backoff = field(default_factory=Backoff)
    dead_letters_not_before: float = 0.0
    # For the console's health signal: when this recorder last caught up, and why not since.
    dead_letters_caught_up_at: datetime | None = None
    dead_letters_error: str = ""
    recorder_next_check_in: float = 0.0

    @property
    def topology(self) -> Topology:
        return self.worker.topology

    def process(self, batch: list[Delivery]) -> None:
        decoded: list[tuple[Delivery, PipelineMessage]] = []
        for delivery in batch:
            try:
                decoded.append((delivery, message_decode(delivery.body)))
            except UndecodableMessage as error:
                # Retrying cannot make it readable: straight to the dead letters.
                with message_context(delivery.message_id):
                    self._fail(delivery, error, retryable=False)
        if decoded:
            batch_ids = (
                decoded[0][0].message_id
                if len(decoded) == 1
                else f"{decoded[0][0].message_id}..{decoded[-1][0].message_id}"
            )
            with message_context(batch_ids):
                self._store_isolating_failures(decoded)
        self.consumer.basic_ack(delivery_tag=batch[-1].delivery_tag, multiple=True)
        self.worker.totals.batches += 1

    def _store_isolating_failures(self, decoded: list[tuple[Delivery, PipelineMessage]]) -> None:
        started = time.monotonic()
        try:
            outcome = self._store_retrying_outages([message for _, message in decoded])
        except Exception as error:
            if not _is_message_fault(error):
                raise
            # One bad message must not hold back the others: store them one by one.
            logger.warning(
                "batch failed (%s); storing its %d messages one by one", type(error).__name__, len(decoded)
            )
            for delivery, message in decoded:
                with message_context(delivery.message_id):
                    try:
                        self.worker.totals.add(self._store_retrying_outages([message]))
                    except Exception as message_error:
                        if not _is_message_fault(message_error):
                            raise
                        self._fail(delivery, message_error, retryable=True)
            return
        self.worker.totals.add(outcome)
        logger.info(
            "stored %d messages (%d readings, %d events, %d webhook events, %d already processed)"
            " in %.0f ms; message ids %s..%s",
            len(decoded),
            outcome.readings_inserted,
            outcome.events_inserted,
            outcome.webhook_events_inserted,
            outcome.messages_already_processed,
            (time.monotonic() - started) * 1000,
            decoded[0][0].message_id,
            decoded[-1][0].message_id,
        )

    def _store_retrying_outages(self, messages: list[PipelineMessage]) -> StoreOutcome:
        """Store, waiting out database outages; a data error is raised to the caller."""
        database_backoff = Backoff()
        while True:
            close_old_connections()
            try:
                with metrics.BATCH_SECONDS.time():
                    return messages_store(messages=messages)
            except DatabaseError as error:
                if _is_message_fault(error):
                    raise
                connection.close()
                delay = database_backoff.next_delay()
                logger.warning(
                    "database unavailable (%s); retrying in %.1fs",
                    str(error).strip().splitlines()[0] if str(error) else type(error).__name__,
                    delay,
                )
                self.worker._wait(delay, broker=self.broker)

    def _fail(self, delivery: Delivery, error: Exception, *, retryable: bool) -> None:
        """Send a failed message to its next retry tier, or to the dead letters."""
        failures = [*list(delivery.headers.get(HEADER_FAILURES) or []), timezone.now().isoformat()]
        error_class = f"{type(error).__module__}.{type(error).__qualname__}"
        error_message = str(error).strip()
        headers = {
            **delivery.headers,
            HEADER_FAILURES: failures,
            HEADER_ERROR_CLASS: error_class,
            HEADER_ERROR_MESSAGE: error_message[:4000],
            HEADER_TRACEBACK: "".join(traceback.format_exception(error))[-TRACEBACK_MAX_CHARS:],
        }
        attempts = len(failures)
        if retryable and attempts < self.worker.max_attempts:
            target = self.topology.retry_queue(attempts)
            self.worker.totals.retried += 1
            metrics.RETRIED.inc()
            logger.warning(
                "message %s failed (attempt %d of %d: %s); retry in %gs",
                delivery.message_id,
                attempts,
                self.worker.max_attempts,
                error_class,
                self.topology.retry_delay(attempts),
            )
        else:
            target = self.topology.dead_queue
            headers[HEADER_ORIGINAL_QUEUE] = self.topology.queue
            headers[HEADER_ORIGINAL_ROUTING_KEY] = delivery.routing_key
            self.worker.totals.dead_lettered += 1
            metrics.DEAD_LETTERED.inc()
            logger.error(
                "message %s dead-lettered after %d attempt(s): %s: %s",
                delivery.message_id,
                attempts,
                error_class,
                error_message[:500],
            )
        # Confirmed before the original is acked: the message is always somewhere.
        outgoing = OutgoingMessage(
            delivery.message_id, delivery.body, delivery.message_type, _json_safe(headers)
        )
        self.publisher.basic_publish(
            exchange="",
            routing_key=target,
            body=outgoing.body,
            properties=outgoing.properties(),
            mandatory=True,
        )
        self._ledger_note_failure(delivery.message_id, attempts, f"{error_class}: {error_message}")

    @staticmethod
    def _ledger_note_failure(message_id: str, attempts: int, error: str) -> None:
        """Show the failure on the status API. Best effort: the broker copy is what counts."""
        try:
            IngestMessage.objects.filter(message_id=message_id).update(
                attempts=attempts, last_error=error[:2000]
            )
        except DatabaseError:
            logger.warning("could not note the failure of %s in the ledger", message_id)

    def record_dead_letters(self, dead_pending: list[Delivery]) -> None:
        """Record dead-lettered messages, acking each only after its row committed.

        A database outage (or anything else unforeseen) leaves them waiting unacked on
        their queue, tried again after a growing pause. A message the database refuses
        never holds the others back: the batch is then recorded one by one, and a message
        still refused is kept with its body and id only (``dead_letter_record_isolated``).
        """
        if time.monotonic() < self.dead_letters_not_before:
            return
        close_old_connections()
        batch = list(dead_pending)
        self.dead_letters_error = ""
        try:
            try:
                recorded = dead_letters_record(dead_messages=[_dead_message_of(d) for d in batch])
            except Exception as error:
                if not _is_message_fault(error):
                    raise
                logger.warning(
                    "recording %d dead letters failed (%s); recording them one by one",
                    len(batch),
                    type(error).__name__,
                )
                for delivery in batch:
                    self._dead_letters_acked([self._record_one(delivery)], [delivery], dead_pending)
            else:
                self._dead_letters_acked(recorded, batch, dead_pending)
        except (StopRequested, *BROKER_ERRORS):
            raise
        except Exception as error:
            # Kept unacked on the dead-letter queue: tried again after a growing pause.
            self.dead_letters_error = f"{type(error).__name__}: {str(error).strip()[:500]}"
            connection.close()
            self.dead_letters_not_before = time.monotonic() + self.dead_letter_backoff.next_delay()
            logger.warning(
                "could not record %d dead letters yet (%s: %s)",
                len(dead_pending),
                type(error).__name__,
                str(error).strip().splitlines()[0] if str(error).strip() else "",
            )
            return
        self.dead_letter_backoff.reset()

    @staticmethod
    def _record_one(delivery: Delivery) -> DeadLetter:
        dead_message = _dead_message_of(delivery)
        try:
            [dead_letter] = dead_letters_record(dead_messages=[dead_message])
        except Exception as error:
            if not _is_message_fault(error):
                raise
            logger.error(
                "dead letter %s refused by the database (%s); kept with its body and id only",
                delivery.message_id,
                type(error).__name__,
            )
            dead_letter = dead_letter_record_isolated(dead_message=dead_message, recording_error=error)
        return dead_letter

    def _dead_letters_acked(
        self, recorded: list[DeadLetter], deliveries: list[Delivery], dead_pending: list[Delivery]
    ) -> None:
        """Ack deliveries whose rows committed (all of a leading run of ``dead_pending``)."""
        self.dead_consumer.basic_ack(delivery_tag=deliveries[-1].delivery_tag, multiple=len(deliveries) > 1)
        del dead_pending[: len(deliveries)]
        self.dead_letters_caught_up_at = timezone.now()
        self.worker.totals.dead_letters_recorded += len(recorded)
        for dead_letter in recorded:
            logger.info(
                "dead letter recorded: message %s (%s)", dead_letter.message_id, dead_letter.error_class
            )

    def recorder_check_in(self, dead_pending: list[Delivery]) -> None:
        """Tell the console this recorder is alive and whether it keeps up (best effort)."""
        if not dead_pending:
            self.dead_letters_caught_up_at = timezone.now()
        if time.monotonic() < self.recorder_next_check_in:
            return
        self.recorder_next_check_in = time.monotonic() + settings.DEAD_LETTER_RECORDING_STALL_SECONDS / 6
        try:
            dead_letter_recorder_check_in(
                name=RECORDER_NAME,
                holding=len(dead_pending),
                caught_up_at=self.dead_letters_caught_up_at,
                last_error=self.dead_letters_error,
            )
        except DatabaseError as error:
            connection.close()  # an outage: the console cannot read it either
            logger.debug("dead-letter recorder check-in failed: %r", error)


def _dead_message_of(delivery: Delivery) -> DeadMessage:
    return DeadMessage(delivery.message_id, delivery.message_type, delivery.headers, delivery.body)
