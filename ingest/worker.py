"""The ingest worker: consume device batches, store them in one transaction, then ack.

The command ``consume_queue`` is a thin wrapper around ``IngestWorker``; tests drive the
worker directly. Guarantees:

* a message is acked only after the transaction holding its rows has committed, so a
  crash at any point leaves it on the queue to be delivered again;
* the ledger written in that transaction makes a second delivery insert nothing;
* a database outage pauses the worker (the batch stays unacked) instead of failing it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import pika
import pika.exceptions
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from ingest.broker.connection import open_connection
from ingest.broker.topology import Topology, topology_declare
from ingest.messages import DeviceBatch
from ingest.services.batch_store import StoreOutcome, device_batches_store

logger = logging.getLogger(__name__)

TRANSIENT_DATABASE_ERRORS = (OperationalError, InterfaceError)
BROKER_ERRORS = (pika.exceptions.AMQPError, OSError)


@dataclass
class Delivery:
    delivery_tag: int
    message_id: str | None
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
    duplicates_skipped: int = 0

    def add(self, outcome: StoreOutcome) -> None:
        self.batches += 1
        self.messages += outcome.messages_stored + outcome.messages_already_processed
        self.readings_inserted += outcome.readings_inserted
        self.events_inserted += outcome.events_inserted
        self.duplicates_skipped += outcome.messages_already_processed


@dataclass
class IngestWorker:
    topology: Topology
    batch_size: int = 200
    batch_max_wait: float = 0.2
    idle_poll: float = 0.5
    totals: WorkerTotals = field(default_factory=WorkerTotals)
    _stop_requested: bool = False

    def request_stop(self) -> None:
        """Ask the worker to finish its current batch and return (signal-handler safe)."""
        self._stop_requested = True

    def run(self, *, stop_when_idle: bool = False) -> WorkerTotals:
        """Consume until asked to stop (or, with ``stop_when_idle``, until the queue is empty)."""
        broker_backoff = Backoff()
        while not self._stop_requested:
            try:
                drained = self._consume(stop_when_idle=stop_when_idle)
                broker_backoff.reset()
                if drained:
                    break
            except BROKER_ERRORS as error:
                # Unacked messages go back to the queue by themselves when the channel dies.
                delay = broker_backoff.next_delay()
                logger.warning("broker connection lost (%r); reconnecting in %.1fs", error, delay)
                self._sleep(delay)
        return self.totals

    def _consume(self, *, stop_when_idle: bool) -> bool:
        broker = open_connection()
        try:
            channel = broker.channel()
            topology_declare(channel=channel, topology=self.topology)
            channel.basic_qos(prefetch_count=self.batch_size)
            pending: list[Delivery] = []

            def on_message(_channel, method, properties, body):
                pending.append(Delivery(method.delivery_tag, properties.message_id, body))

            channel.basic_consume(queue=self.topology.queue, on_message_callback=on_message)
            logger.info("consuming from %s (batch %d)", self.topology.queue, self.batch_size)
            while not self._stop_requested:
                self._fill(broker, pending)
                if not pending:
                    if stop_when_idle:
                        return True
                    continue
                batch, pending[:] = pending[: self.batch_size], pending[self.batch_size:]
                self._store_until_committed(broker, batch)
                channel.basic_ack(delivery_tag=batch[-1].delivery_tag, multiple=True)
            # Stop requested: whatever was delivered meanwhile is stored and acked, not dropped.
            if pending:
                self._store_until_committed(broker, pending)
                channel.basic_ack(delivery_tag=pending[-1].delivery_tag, multiple=True)
            return True
        finally:
            if broker.is_open:
                broker.close()

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

    def _store_until_committed(self, broker: pika.BlockingConnection, batch: list[Delivery]) -> None:
        database_backoff = Backoff()
        decoded = [DeviceBatch.from_body(delivery.body) for delivery in batch]
        while True:
            close_old_connections()
            started = time.monotonic()
            try:
                outcome = device_batches_store(batches=decoded)
            except TRANSIENT_DATABASE_ERRORS as error:
                # Not the messages' fault: keep them unacked, wait, and try the same batch again.
                connection.close()
                delay = database_backoff.next_delay()
                logger.warning("database unavailable (%s); retrying batch in %.1fs", error, delay)
                self._sleep(delay, broker=broker)
                continue
            self.totals.add(outcome)
            logger.info(
                "stored batch of %d messages (%d readings, %d events, %d already processed) "
                "in %.0f ms; last message id %s",
                len(batch),
                outcome.readings_inserted,
                outcome.events_inserted,
                outcome.messages_already_processed,
                (time.monotonic() - started) * 1000,
                batch[-1].message_id,
            )
            return

    @staticmethod
    def _sleep(seconds: float, *, broker: pika.BlockingConnection | None = None) -> None:
        # Sleeping through the broker connection keeps its heartbeats answered.
        if broker is not None and broker.is_open:
            broker.sleep(seconds)
        else:
            time.sleep(seconds)
