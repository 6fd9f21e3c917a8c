"""What a device is told about one of its messages (GET /api/v1/ingest/<id>/)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from ingest.message_ids import message_id_verify
from ingest.models import DeadLetter, Device, IngestMessage


@dataclass(frozen=True)
class MessageStatus:
    id: uuid.UUID
    status: str  # pending | processed | failed | discarded | expired
    received_at: datetime
    processed_at: datetime | None
    attempts: int
    error: str | None  # one of DEVICE_ERROR_CODES; the details are for staff, in the console


# What a device is told about a failure: a stable code, never the exception's text, which
# may quote the database, the schema or other records. The error class decides the code.
DEVICE_ERROR_CODES = {
    "DataError": "invalid_data",  # a value the database refused (too long, out of range)
    "IntegrityError": "integrity_error",  # conflicts with stored data (e.g. an unknown device)
    "UndecodableMessage": "undecodable",  # the message could not be read at all
}
DEVICE_ERROR_OTHER = "processing_error"


def device_error_code(error_class: str) -> str | None:
    """The code a device sees for a failure recorded as ``error_class`` ("" for none)."""
    if not error_class:
        return None
    return DEVICE_ERROR_CODES.get(error_class.rpartition(".")[2], DEVICE_ERROR_OTHER)


_DEAD_LETTER_STATUS = {
    DeadLetter.Status.DEAD: "failed",
    DeadLetter.Status.DISCARDED: "discarded",
    DeadLetter.Status.REQUEUED: "pending",
}


MESSAGE_STATUS_EXPIRED = "expired"


def ingest_message_status(*, device: Device, message_id: uuid.UUID) -> MessageStatus | None:
    """The state of one of the device's messages; None if it is not this device's.

    The worker writes the ledger row when it stores the message or an attempt fails. Until
    then the id itself proves it was issued to this device (ingest/message_ids.py): such a
    message is ``pending``. Once the ledger's retention (RETENTION_LEDGER_DAYS) has passed
    without a row, the outcome is no longer kept: the status is ``expired``.
    """
    ledger = IngestMessage.objects.filter(message_id=message_id, device=device).first()
    if ledger is not None:
        return _ledger_status(ledger)
    issued = message_id_verify(message_id=message_id, device_id=device.pk)
    if issued is None:
        return None
    # The id verified for this device, so a dead letter with it is this device's even when
    # it was recorded without one (a letter the database refused in full keeps only its id).
    dead_letter = DeadLetter.objects.filter(message_id=message_id).first()
    if dead_letter is not None:
        # Recorded as dead although the ledger row is missing (its write is best effort).
        return MessageStatus(
            id=message_id,
            status=_DEAD_LETTER_STATUS[dead_letter.status],
            received_at=issued.issued_at,
            processed_at=None,
            attempts=dead_letter.attempts,
            error=device_error_code(dead_letter.error_class),
        )
    expired = issued.issued_at < timezone.now() - timedelta(days=settings.RETENTION_LEDGER_DAYS)
    return MessageStatus(
        id=message_id,
        status=MESSAGE_STATUS_EXPIRED if expired else "pending",
        received_at=issued.issued_at,
        processed_at=None,
        attempts=0,
        error=None,
    )


def _ledger_status(ledger: IngestMessage) -> MessageStatus:
    status = "processed" if ledger.status == IngestMessage.Status.PROCESSED else "pending"
    # The ledger notes "<error class>: <message>"; only the class reaches the device.
    error = device_error_code(ledger.last_error.partition(": ")[0])
    attempts = ledger.attempts
    if status != "processed":
        dead_letter = DeadLetter.objects.filter(message_id=ledger.message_id).first()
        if dead_letter is not None:
            status = _DEAD_LETTER_STATUS[dead_letter.status]
            error = device_error_code(dead_letter.error_class)
            attempts = max(attempts, dead_letter.attempts)
    return MessageStatus(
        id=ledger.message_id,
        status=status,
        received_at=ledger.received_at,
        processed_at=ledger.processed_at,
        attempts=attempts,
        error=error,
    )
