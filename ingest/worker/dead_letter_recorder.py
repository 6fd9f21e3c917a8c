"""The dead-letter recorder: consumes ``<q>.dead`` into the ``DeadLetter`` table.

A handler for the generic ``BatchConsumer``, run beside the ingest consumer. Each
letter is acked only after its row committed. A database outage (or anything else
unforeseen) leaves the letters unacked on their queue, tried again after a growing
pause; a letter the database refuses never holds the others back: the batch is then
recorded one by one, and a letter still refused is kept with its body and id only
(``dead_letter_record_isolated``). Every few seconds the recorder checks in
(``DeadLetterRecorder``), so that the console can tell when letters wait unrecorded.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from ingest.broker.connection import Backoff
from ingest.broker.topology import Topology, topology_declare
from ingest.models import DeadLetter
from ingest.services.dead_letters import (
    DeadMessage,
    dead_letter_record_isolated,
    dead_letter_recorder_check_in,
    dead_letters_record,
)
from ingest.worker.consumer import BROKER_ERRORS, ConsumerSession, Delivery, StopRequested
from ingest.worker.ingest_handler import is_message_fault
from ingest.worker.totals import WorkerTotals

logger = logging.getLogger(__name__)

RECORDER_NAME = f"{socket.gethostname()}:{os.getpid()}"
DEAD_LETTER_BATCH_SIZE = 100


def _dead_message_of(delivery: Delivery) -> DeadMessage:
    return DeadMessage(delivery.message_id, delivery.message_type, delivery.headers, delivery.body)


@dataclass
class DeadLetterRecorderHandler:
    topology: Topology
    totals: WorkerTotals
    name: str = RECORDER_NAME
    backoff: Backoff = field(default_factory=Backoff)
    not_before: float = 0.0
    # For the console's health signal: when this recorder last caught up (at start, it
    # has nothing to catch up with yet), and why not since.
    caught_up_at: datetime = field(default_factory=timezone.now)
    last_error: str = ""
    next_check_in: float = 0.0

    @property
    def queues(self) -> tuple[str, ...]:
        return (self.topology.dead_queue,)

    def declare(self, channel) -> None:
        topology_declare(channel=channel, topology=self.topology)

    def consume_batch(
        self, deliveries: list[Delivery], session: ConsumerSession, upcoming: list[Delivery]
    ) -> int:
        """Record the letters; return how many leading ones committed (those are acked)."""
        if time.monotonic() < self.not_before:
            return 0
        close_old_connections()
        self.last_error = ""
        recorded_count = 0
        try:
            try:
                recorded = dead_letters_record(dead_messages=[_dead_message_of(d) for d in deliveries])
            except Exception as error:
                if not is_message_fault(error):
                    raise
                logger.warning(
                    "recording %d dead letters failed (%s); recording them one by one",
                    len(deliveries),
                    type(error).__name__,
                )
                for delivery in deliveries:
                    self._recorded([self._record_one(delivery)])
                    recorded_count += 1
            else:
                self._recorded(recorded)
                recorded_count = len(deliveries)
        except (StopRequested, *BROKER_ERRORS):
            raise
        except Exception as error:
            # Kept unacked on the dead-letter queue: tried again after a growing pause.
            self.last_error = f"{type(error).__name__}: {str(error).strip()[:500]}"
            connection.close()
            self.not_before = time.monotonic() + self.backoff.next_delay()
            logger.warning(
                "could not record %d dead letters yet (%s: %s)",
                len(deliveries) - recorded_count,
                type(error).__name__,
                str(error).strip().splitlines()[0] if str(error).strip() else "",
            )
            return recorded_count
        self.backoff.reset()
        return recorded_count

    @staticmethod
    def _record_one(delivery: Delivery) -> DeadLetter:
        dead_message = _dead_message_of(delivery)
        try:
            [dead_letter] = dead_letters_record(dead_messages=[dead_message])
        except Exception as error:
            if not is_message_fault(error):
                raise
            logger.error(
                "dead letter %s refused by the database (%s); kept with its body and id only",
                delivery.message_id,
                type(error).__name__,
            )
            dead_letter = dead_letter_record_isolated(dead_message=dead_message, recording_error=error)
        return dead_letter

    def _recorded(self, recorded: list[DeadLetter]) -> None:
        self.caught_up_at = timezone.now()
        self.totals.dead_letters_recorded += len(recorded)
        for dead_letter in recorded:
            logger.info(
                "dead letter recorded: message %s (%s)", dead_letter.message_id, dead_letter.error_class
            )

    def tick(self, held: list[Delivery]) -> None:
        """Tell the console this recorder is alive and whether it keeps up (best effort)."""
        if not held:
            self.caught_up_at = timezone.now()
        if time.monotonic() < self.next_check_in:
            return
        self.next_check_in = time.monotonic() + settings.DEAD_LETTER_RECORDING_STALL_SECONDS / 6
        try:
            close_old_connections()
            dead_letter_recorder_check_in(
                name=self.name,
                holding=len(held),
                caught_up_at=self.caught_up_at,
                last_error=self.last_error,
            )
        except DatabaseError as error:
            connection.close()  # an outage: the console cannot read it either
            logger.debug("dead-letter recorder check-in failed: %r", error)

    def close(self) -> None:
        pass
