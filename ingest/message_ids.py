"""Message ids that carry their own proof: the one module that makes and reads them.

The ingest API answers 202 without writing to the database, so a message that the worker
has not stored yet has no ledger row. Its id still lets the status API answer honestly:

    UUID version 8 (RFC 9562), 128 bits, most significant first
    48  unix time in milliseconds when the message was accepted
     4  version (8)
    12  random
     2  variant (0b10)
    30  random
    32  truncated HMAC-SHA256 (Django ``salted_hmac``, keyed by SECRET_KEY, salt below)
        over the device id, the timestamp and the 42 random bits

So a valid id proves "this device was given this id at this time" without a lookup: an id
made up by the device, changed in any bit, or given to another device does not verify
(a blind guess succeeds once in 2**32). 42 random bits per millisecond keep two messages
apart (a collision among 10,000 ids in the same millisecond is about 1 in 10**5, and then
only the ledger, not the data, would conflate them). Ids are time-ordered, which also keeps
the ledger's primary key index append-mostly.
"""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.utils.crypto import salted_hmac

_SALT = "iot_care.ingest.message_id.v1"
_VERSION = 8
_TIMESTAMP_BITS = 48
_RANDOM_A_BITS = 12
_RANDOM_B_BITS = 30
_MAC_BITS = 32
_RANDOM_BITS = _RANDOM_A_BITS + _RANDOM_B_BITS


@dataclass(frozen=True)
class SignedMessageId:
    """What a verified id says: when it was issued."""

    issued_at: datetime


def _mac(*, device_id: int, timestamp_ms: int, random_bits: int, secret: str | None = None) -> int:
    value = f"{device_id}:{timestamp_ms}:{random_bits}"
    digest = salted_hmac(_SALT, value, secret=secret, algorithm="sha256").digest()
    return int.from_bytes(digest[: _MAC_BITS // 8], "big")


def _assemble(*, timestamp_ms: int, random_bits: int, mac: int) -> uuid.UUID:
    random_a = random_bits >> _RANDOM_B_BITS
    random_b = random_bits & ((1 << _RANDOM_B_BITS) - 1)
    value = timestamp_ms << 80
    value |= _VERSION << 76
    value |= random_a << 64
    value |= 0b10 << 62
    value |= random_b << _MAC_BITS
    value |= mac
    return uuid.UUID(int=value)


def _fields(message_id: uuid.UUID) -> tuple[int, int, int] | None:
    """(timestamp ms, random bits, mac) of a version 8 id with the RFC variant, else None."""
    value = message_id.int
    if (value >> 76) & 0xF != _VERSION or (value >> 62) & 0b11 != 0b10:
        return None
    timestamp_ms = value >> 80
    random_a = (value >> 64) & ((1 << _RANDOM_A_BITS) - 1)
    random_b = (value >> _MAC_BITS) & ((1 << _RANDOM_B_BITS) - 1)
    mac = value & ((1 << _MAC_BITS) - 1)
    return timestamp_ms, (random_a << _RANDOM_B_BITS) | random_b, mac


def message_id_issue(*, device_id: int, at: datetime | None = None) -> uuid.UUID:
    """A new id for a message of ``device_id`` accepted now (or ``at``)."""
    timestamp_ms = int((at.timestamp() if at is not None else time.time()) * 1000)
    random_bits = secrets.randbits(_RANDOM_BITS)
    mac = _mac(device_id=device_id, timestamp_ms=timestamp_ms, random_bits=random_bits)
    return _assemble(timestamp_ms=timestamp_ms, random_bits=random_bits, mac=mac)


def message_id_verify(*, message_id: uuid.UUID, device_id: int) -> SignedMessageId | None:
    """What the id proves if it was issued to ``device_id`` by this service, else None."""
    fields = _fields(message_id)
    if fields is None:
        return None
    timestamp_ms, random_bits, mac = fields
    # Ids issued before a key rotation still verify while the old key is a fallback.
    for secret in (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ())):
        expected = _mac(
            device_id=device_id, timestamp_ms=timestamp_ms, random_bits=random_bits, secret=secret
        )
        if hmac.compare_digest(expected.to_bytes(4, "big"), mac.to_bytes(4, "big")):
            return SignedMessageId(issued_at=datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC))
    return None
