"""The ingest worker, in the shape of Zulip's queue workers.

* ``consumer.BatchConsumer``: the generic loop (connection, channels, batches taken as
  they are ready, ack after the handler, backoff, stop); it knows nothing of ingest.
* ``ingest_handler.IngestBatchHandler``: decodes and stores a batch in one transaction,
  isolates the messages at fault, and returns the outcome.
* ``failure_router.FailureRouter``: retry tier or dead queue, the confirmed copy, metrics,
  the ledger note.
* ``dead_letter_recorder.DeadLetterRecorderHandler``: ``<q>.dead`` into the
  ``DeadLetter`` table, as its own consumer.

``IngestWorker`` runs the ingest consumer and the recorder side by side (the recorder
in a thread, each with its own broker connection), and with MQTT_ENABLED the MQTT bridge
(``ingest.mqtt.bridge``) in a thread of its own; ``consume_queue`` is a thin command
around it and tests drive it directly. What it guarantees:

* a message is acked only after the transaction holding its rows committed, or after
  the broker confirmed its copy on a retry or dead-letter queue: a crash at any point
  leaves it to be delivered again, and the ledger makes a second delivery harmless;
* a database or broker outage is never the messages' fault: the batch stays unacked,
  the worker waits with capped exponential backoff and carries on where it was;
* a message that fails for its own reasons is isolated (the rest of its batch commits)
  and retried after growing delays, up to ``INGEST_MAX_ATTEMPTS``; then, or at once if
  it cannot even be decoded, it goes to the dead-letter queue, whose recorder keeps it
  in the ``DeadLetter`` table.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections

from ingest.broker.connection import Backoff
from ingest.broker.topology import Topology
from ingest.mqtt.bridge import MQTT_BRIDGE_BATCH_SIZE, MqttBridgeHandler
from ingest.worker.consumer import BatchConsumer, Delivery, StopRequested
from ingest.worker.dead_letter_recorder import DEAD_LETTER_BATCH_SIZE, DeadLetterRecorderHandler
from ingest.worker.failure_router import FailedDelivery, FailureRouter
from ingest.worker.ingest_handler import BatchOutcome, IngestBatchHandler
from ingest.worker.totals import WorkerTotals

__all__ = [
    "Backoff",
    "BatchConsumer",
    "BatchOutcome",
    "DeadLetterRecorderHandler",
    "Delivery",
    "FailedDelivery",
    "FailureRouter",
    "IngestBatchHandler",
    "IngestWorker",
    "StopRequested",
    "WorkerTotals",
]


@dataclass
class IngestWorker:
    topology: Topology
    batch_size: int = 200
    batch_max_wait: float = 0.2
    batch_max_bytes: int = 4 * 1024 * 1024
    max_attempts: int = 5
    idle_poll: float = 0.5
    totals: WorkerTotals = field(default_factory=WorkerTotals)
    mqtt_bridge: bool = field(default_factory=lambda: settings.MQTT_ENABLED)

    def __post_init__(self) -> None:
        router = FailureRouter(topology=self.topology, max_attempts=self.max_attempts, totals=self.totals)
        self.ingest = BatchConsumer(
            handler=IngestBatchHandler(topology=self.topology, router=router, totals=self.totals),
            role="worker",
            batch_size=self.batch_size,
            batch_max_bytes=self.batch_max_bytes,
            batch_max_wait=self.batch_max_wait,
            idle_poll=self.idle_poll,
        )
        self.recorder = BatchConsumer(
            handler=DeadLetterRecorderHandler(topology=self.topology, totals=self.totals),
            role="worker dead-letter recorder",
            batch_size=DEAD_LETTER_BATCH_SIZE,
            batch_max_wait=self.batch_max_wait,
            prefetch=DEAD_LETTER_BATCH_SIZE,
            idle_poll=self.idle_poll,
        )
        self.side_consumers = [self.recorder]
        if self.mqtt_bridge:
            self.side_consumers.append(
                BatchConsumer(
                    handler=MqttBridgeHandler(topology=self.topology, totals=self.totals),
                    role="worker mqtt bridge",
                    batch_size=MQTT_BRIDGE_BATCH_SIZE,
                    batch_max_wait=self.batch_max_wait,
                    idle_poll=self.idle_poll,
                )
            )

    @property
    def stop_requested(self) -> bool:
        return self.ingest.stop_requested

    def request_stop(self) -> None:
        """Ask every consumer to finish its current batch and return (signal-handler safe)."""
        self.ingest.request_stop()
        for consumer in self.side_consumers:
            consumer.request_stop()

    def run(self, *, stop_when_idle: bool = False) -> WorkerTotals:
        """Consume until asked to stop (or, with ``stop_when_idle``, until the queues are empty).

        With ``stop_when_idle`` the recorder (and the MQTT bridge) finish after the ingest
        consumer, so that what the last batches dead-lettered is recorded too; what the
        bridge queues after that waits in the main queue for the next run.
        """
        if self.stop_requested:
            return self.totals
        side_failure: list[BaseException] = []

        def run_side(consumer: BatchConsumer) -> None:
            try:
                consumer.run()
            except BaseException as error:  # raised in the caller's thread below
                side_failure.append(error)
                self.ingest.request_stop()
            finally:
                connections.close_all()

        threads = [
            threading.Thread(target=run_side, args=(consumer,), name=consumer.role, daemon=True)
            for consumer in self.side_consumers
        ]
        for thread in threads:
            thread.start()
        finished = False
        try:
            self.ingest.run(stop_when_idle=stop_when_idle)
            finished = True
        finally:
            for consumer in self.side_consumers:
                if finished and stop_when_idle and not self.stop_requested:
                    consumer.finish_when_idle()
                else:
                    consumer.request_stop()
            for thread in threads:
                thread.join()
        if side_failure:
            raise side_failure[0]
        return self.totals
