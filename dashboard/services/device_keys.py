"""Issuing and revoking device keys from the console, and handing a new key over once.

Issuing is POST → redirect → GET, so that reloading the page that shows a key can never
mint another one. The plain key must not be stored anywhere (only its hash is, in
``DeviceAPIKey``), yet the GET after the redirect has to show it. The hand-over splits it
in two with a one-time pad:

- the POST draws a random pad as long as the key and keeps ``key XOR pad`` in the
  operator's session, under a random one-time token;
- the pad travels only to the operator's browser, as an HttpOnly, SameSite=Strict cookie
  limited to the hand-over URL and to ``HANDOVER_SECONDS``;
- the GET combines the two, shows the key and removes the sealed half from the session
  (and the pad from the browser). A second GET finds nothing and says so.

Neither half alone says anything about the key (a one-time pad used once): not the
session table, not a database backup, not the browser's cookie store, not SECRET_KEY.
The standard library is enough; no cipher is needed because the pad is never reused.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from core.errors import ApplicationError
from dashboard.services import audit_record, device_key_issue_audited
from ingest.models import Device
from ingest.services.devices import device_key_revoke

HANDOVERS_SESSION_KEY = "device_key_handovers"
HANDOVER_PAD_COOKIE = "device_key_pad"
HANDOVER_SECONDS = 300
# Pending hand-overs kept per session: an operator issuing keys in a loop never grows it.
MAX_PENDING_HANDOVERS = 5


@dataclass(frozen=True)
class KeyHandover:
    token: str  # names the sealed half in the session; goes in the hand-over URL
    pad: str  # the other half, for the browser's cookie only


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def device_key_issue_for_handover(
    *, session, device: Device, name: str, actor: AbstractBaseUser
) -> KeyHandover:
    """Issue a key (audited) and seal it for one showing; returns what the redirect carries."""
    key = device_key_issue_audited(device=device, name=name, actor=actor)
    plain = key.encode()
    pad = secrets.token_bytes(len(plain))
    token = secrets.token_urlsafe(18)
    now = time.time()
    pending = {
        other: handover
        for other, handover in session.get(HANDOVERS_SESSION_KEY, {}).items()
        if now - handover["at"] < HANDOVER_SECONDS
    }
    oldest_first = sorted(pending, key=lambda other: pending[other]["at"])
    for stale in oldest_first[: max(0, len(oldest_first) - (MAX_PENDING_HANDOVERS - 1))]:
        del pending[stale]
    pending[token] = {
        "device": device.pk,
        "prefix": key.partition(".")[0],
        "sealed": base64.b64encode(_xor(plain, pad)).decode(),
        "at": now,
    }
    session[HANDOVERS_SESSION_KEY] = pending
    return KeyHandover(token=token, pad=base64.urlsafe_b64encode(pad).decode())


def device_key_handover_open(*, session, device: Device, token: str, pad: str | None) -> str | None:
    """The key sealed under ``token``, once: the sealed half is removed whatever happens.

    None when it was already shown, has expired, belongs to another device, or the
    browser did not bring the pad.
    """
    pending = dict(session.get(HANDOVERS_SESSION_KEY, {}))
    handover = pending.pop(token, None)
    if handover is not None:
        session[HANDOVERS_SESSION_KEY] = pending
    if handover is None or not pad or handover["device"] != device.pk:
        return None
    if time.time() - handover["at"] >= HANDOVER_SECONDS:
        return None
    try:
        sealed = base64.b64decode(handover["sealed"])
        plain = _xor(sealed, base64.urlsafe_b64decode(pad.encode()))
        key = plain.decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if key.partition(".")[0] != handover["prefix"]:
        return None  # a pad from another hand-over
    return key


@transaction.atomic
def device_key_revoke_audited(*, device: Device, prefix: str, actor: AbstractBaseUser) -> None:
    """Revoke one key of the device (the others keep working)."""
    if not device_key_revoke(device=device, prefix=prefix):
        raise ApplicationError(f"{device.serial_no} has no active key {prefix}", code="conflict")
    audit_record(actor=actor, action="revoked device key", target=device.serial_no, detail=f"prefix {prefix}")
