"""Dead letters: recording messages that ran out of attempts, and repairing them.

A message that can never succeed is published by the worker to the dead-letter queue
(with its error, traceback and failure times in the headers) and only then acked. The
worker records what arrives there in the ``DeadLetter`` table and acks after commit,
so a database outage at that moment only delays the record: nothing is lost.
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from core.errors import ApplicationError
from ingest.broker.publisher import OutgoingMessage, publish_many_confirmed
from ingest.json_input import JsonInputError, json_parse, text_escaped, text_problem
from ingest.messages import (
    DEVICE_BATCH,
    HEADER_SCHEMA_VERSION,
    SCHEMA_VERSION,
    DeviceBatch,
    FailureEnvelope,
    UndecodableMessage,
    message_decode,
)
from ingest.metrics import REQUEUED
from ingest.models import DeadLetter, DeadLetterAction, DeadLetterRecorder, Device, DeviceStatus
from ingest.mqtt.payloads import MQTT_PUBLISH, MqttPayloadRefused, mqtt_publish_chunk
from ingest.mqtt.topics import MQTT_EXCHANGE, device_topic_of
from ingest.record_validation import DeviceRecordsSerializer
from ingest.services.ingestion import message_publish_confirmed

_VOLATILE_PARTS = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<uuid>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<value>"),
    (re.compile(r"\b\d+(\.\d+)?\b"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def error_message_normalise(message: str) -> str:
    """The error message with ids, quoted values and numbers blanked out."""
    for pattern, replacement in _VOLATILE_PARTS:
        message = pattern.sub(replacement, message)
    return message.strip()


def error_fingerprint(*, error_class: str, error_message: str) -> str:
    normalised = f"{error_class}|{error_message_normalise(error_message)}"
    return hashlib.sha256(normalised.encode()).hexdigest()


@dataclass(frozen=True)
class DeadMessage:
    """A message as it arrived on the dead-letter queue (headers as pika decoded them)."""

    message_id: str | None
    message_type: str | None
    headers: dict
    body: bytes


# PostgreSQL text and jsonb cannot hold NUL nor a lone surrogate, and jsonb no NaN or
# Infinity. Header values that contain them are stored tagged and escaped, so nothing is
# lost: {ESCAPED_TEXT: s.encode("unicode_escape")}, {ESCAPED_BYTES: codecs.escape_encode(b)}.
ESCAPED_TEXT = "$escaped_text"
ESCAPED_BYTES = "$escaped_bytes"
CHAR_FIELD_MAX = 255


def body_text_of(body: bytes) -> str:
    """The body as searchable text: as sent where it is UTF-8, escaped where it is not."""
    return text_escaped(body.decode("utf-8", "backslashreplace"))


def _header_storable(value):
    """A header value as jsonb can hold it, losslessly where it cannot hold it as sent."""
    if isinstance(value, dict):
        return {_header_key_storable(key): _header_storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_header_storable(item) for item in value]
    if isinstance(value, str):
        if text_problem(value) is None:
            return value
        return {ESCAPED_TEXT: value.encode("unicode_escape").decode("ascii")}
    if isinstance(value, bytes | bytearray):
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and text_problem(text) is None:
            return text
        return {ESCAPED_BYTES: codecs.escape_encode(bytes(value))[0].decode("ascii")}
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)  # Decimal and whatever else AMQP tables may carry


def _header_key_storable(key) -> str:
    key = key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else str(key)
    return key if text_problem(key) is None else key.encode("unicode_escape").decode("ascii")


def _storable_text(text: str, default: str = "") -> str:
    """A header's text as a text column can hold it (see ``text_escaped``)."""
    return text_escaped(text) if text else default


def _device_id_of(body: bytes) -> int | None:
    try:
        return message_decode(body).device_id
    except UndecodableMessage:
        return None


def _dead_letter_fields(dead: DeadMessage, now: datetime) -> dict:
    headers = dead.headers
    envelope = FailureEnvelope.from_headers(headers)
    failures = envelope.failures or (now,)
    error_class = _storable_text(envelope.error_class, "UnknownError")[:CHAR_FIELD_MAX]
    error_message = _storable_text(envelope.error_message)
    return {
        "kind": text_escaped(dead.message_type or "")[:16],
        "device_id": _device_id_of(dead.body),
        "original_queue": _storable_text(envelope.original_queue)[:CHAR_FIELD_MAX],
        "original_routing_key": _storable_text(envelope.original_routing_key)[:CHAR_FIELD_MAX],
        "headers": _header_storable(headers),
        "body": dead.body,
        "body_text": body_text_of(dead.body),
        "error_class": error_class,
        "error_message": error_message,
        "fingerprint": error_fingerprint(error_class=error_class, error_message=error_message),
        "traceback": _storable_text(envelope.traceback),
        "attempts": len(failures),
        "first_failed_at": failures[0],
        "last_failed_at": failures[-1],
        "status": DeadLetter.Status.DEAD,
        "recording_error": "",
    }


def _dead_letter_save(*, message_id: str | None, fields: dict, reason: str) -> DeadLetter:
    # A message that died before (then was requeued) keeps its first failure time.
    first_failed_at = fields.pop("first_failed_at")
    dead_letter, _ = DeadLetter.objects.select_for_update().update_or_create(
        message_id=message_id,
        defaults=fields,
        create_defaults={**fields, "first_failed_at": first_failed_at},
    )
    DeadLetterAction.objects.create(
        dead_letter=dead_letter, action=DeadLetterAction.Action.RECORDED, reason=reason[:2000]
    )
    return dead_letter


@transaction.atomic
def dead_letters_record(*, dead_messages: list[DeadMessage]) -> list[DeadLetter]:
    """Store (or refresh, for a message that died again) one row per dead message."""
    now = timezone.now()
    recorded = []
    for dead in dead_messages:
        fields = _dead_letter_fields(dead, now)
        reason = f"{fields['error_class']}: {fields['error_message']}"
        recorded.append(_dead_letter_save(message_id=dead.message_id, fields=fields, reason=reason))
    return recorded


@transaction.atomic
def dead_letter_record_isolated(*, dead_message: DeadMessage, recording_error: Exception) -> DeadLetter:
    """Keep a message the database refused to record in full, with what refused it.

    Only what cannot be refused is stored as it came: the body (bytes) and the message
    id; the headers are kept as one escaped ASCII string, the rest blank. The console
    shows the recording error, and the message can be requeued or discarded as usual.
    """
    now = timezone.now()
    headers = dead_message.headers
    envelope = FailureEnvelope.from_headers(headers)
    error_class = ascii(_storable_text(envelope.error_class, "UnknownError"))[1:-1][:CHAR_FIELD_MAX]
    error_message = ascii(_storable_text(envelope.error_message))[1:-1]
    failures = envelope.failures or (now,)
    problem = ascii(f"{type(recording_error).__name__}: {recording_error}".strip())[1:-1]
    fields = {
        "kind": ascii(dead_message.message_type or "")[1:-1][:16],
        "device_id": None,
        "original_queue": "",
        "original_routing_key": "",
        "headers": {"headers_as_received": ascii(headers)},
        "body": dead_message.body,
        "body_text": body_text_of(dead_message.body),
        "error_class": error_class,
        "error_message": error_message,
        "fingerprint": error_fingerprint(error_class=error_class, error_message=error_message),
        "traceback": "",
        "attempts": len(failures),
        "first_failed_at": failures[0],
        "last_failed_at": failures[-1],
        "status": DeadLetter.Status.DEAD,
        "recording_error": problem,
    }
    return _dead_letter_save(
        message_id=dead_message.message_id, fields=fields, reason=f"recorded in part: {problem}"
    )


def dead_letter_recorder_check_in(
    *, name: str, holding: int, caught_up_at: datetime | None, last_error: str
) -> None:
    """A worker's recorder says it is alive, what it holds, and when it last caught up."""
    now = timezone.now()
    _, created = DeadLetterRecorder.objects.update_or_create(
        name=name[:CHAR_FIELD_MAX],
        defaults={
            "checked_in_at": now,
            "caught_up_at": caught_up_at,
            "holding": holding,
            "last_error": text_escaped(last_error)[:2000],
        },
    )
    if created:  # a new process: forget the ones long gone
        DeadLetterRecorder.objects.filter(checked_in_at__lt=now - timedelta(days=1)).delete()


def reason_require(reason: str, *, to: str) -> None:
    """Edits and discards must say why (the audit trail shows it)."""
    if not reason.strip():
        raise ApplicationError(
            f"a reason is required to {to}", code="invalid", fields={"reason": ["This field is required."]}
        )


def _actor_name(actor: AbstractBaseUser | None) -> str:
    return actor.get_username() if actor is not None else ""


def _locked_dead_letter(dead_letter_id: int) -> DeadLetter:
    try:
        dead_letter = DeadLetter.objects.select_for_update().get(pk=dead_letter_id)
    except DeadLetter.DoesNotExist:
        raise ApplicationError(f"no dead letter {dead_letter_id}", code="not_found") from None
    if dead_letter.status != DeadLetter.Status.DEAD:
        raise ApplicationError(
            f"dead letter {dead_letter_id} is already {dead_letter.status}", code="conflict"
        )
    return dead_letter


# What an edit may change: the records. Everything else (kind, device_id, source,
# message_id, accepted_at, ...) says whose data this is and where it came from.
EDITABLE_FIELDS = ("readings", "events")


def _edit_refused(message: str, fields: dict) -> ApplicationError:
    return ApplicationError(message, code="invalid", fields=fields)


def _edited_mqtt_payload_check(dead_letter: DeadLetter, edited_body: str) -> bytes:
    """An edited MQTT publish: the payload as the device could have sent it to the same topic.

    Checked as the bridge checks a publish, with the topic's sender as it is now; sent back
    to the topic as edited (the bridge derives its id from the topic and the content).
    """
    routing_key = dead_letter.original_routing_key
    topic = device_topic_of(routing_key)
    sender = (
        Device.objects.filter(serial_no=topic.sender_serial_no, status=DeviceStatus.ACTIVE).first()
        if topic is not None
        else None
    )
    if sender is None:
        raise _edit_refused(
            f"no active device publishes on {routing_key!r} any more, so nothing sent there would be"
            " stored: discard it",
            {"device": ["Not the topic of an active device."]},
        )
    body = edited_body.encode()
    try:
        mqtt_publish_chunk(routing_key, body, topic=topic, sender=sender)
    except MqttPayloadRefused as refused:
        raise _edit_refused(
            "the edited payload is not valid (the MQTT bridge, like the ingest API, would refuse it)",
            refused.fields,
        ) from refused
    return body


def _edited_body_check(dead_letter: DeadLetter, edited_body: str) -> bytes:
    """The requeued body: the original message with the edited records, validated as the API does.

    The message is rebuilt from the original's identity and the validated records, so
    that what reaches the worker is exactly what the ingest API would have queued. An
    MQTT publish is the device's payload, edited as a whole.
    """
    if dead_letter.kind == MQTT_PUBLISH:
        return _edited_mqtt_payload_check(dead_letter, edited_body)
    try:
        original = message_decode(bytes(dead_letter.body))
    except UndecodableMessage as error:
        raise _edit_refused(
            "this message cannot be edited: its original is not a valid message, so whose data it "
            "is cannot be known (requeue it as it is or discard it)",
            {"body": [f"The original message is not valid: {error}"]},
        ) from error
    if original.kind != DEVICE_BATCH:
        raise _edit_refused(
            "a partner's webhook event cannot be edited (the partner signed it); requeue it as it is "
            "or discard it",
            {"body": ["Only a device's readings and events can be edited."]},
        )
    try:
        edited = json_parse(edited_body)  # the API's own reader: no NaN, nesting bounded
    except JsonInputError as error:
        raise _edit_refused(
            f"the edited body is not a valid message: {error}", {"body": [f"The body is not JSON: {error}"]}
        ) from error
    if not isinstance(edited, dict):
        raise _edit_refused("the edited body is not a valid message", {"body": ["Must be a JSON object."]})
    original_fields = json.loads(bytes(dead_letter.body))
    changed = {
        name: [
            f"Cannot be changed by an edit: only {' and '.join(EDITABLE_FIELDS)} can. "
            f"It must stay {json.dumps(original_fields[name]) if name in original_fields else 'absent'}."
        ]
        for name in sorted(set(original_fields) | set(edited))
        if name not in EDITABLE_FIELDS
        and json.dumps(original_fields.get(name), sort_keys=True)
        != json.dumps(edited.get(name), sort_keys=True)
    }
    if changed:
        raise _edit_refused(f"an edit may change only the records, not {', '.join(changed)}", changed)
    # The original sender's rules: a gateway's relayed records are checked again (the
    # device may have left the household or been retired since).
    sender = Device.objects.filter(pk=original.device_id).first()
    records = DeviceRecordsSerializer(
        data={name: edited[name] for name in EDITABLE_FIELDS if name in edited}, context={"device": sender}
    )
    if not records.is_valid():
        raise _edit_refused(
            "the edited records are not valid (the ingest API would refuse them)", records.errors
        )
    return DeviceBatch(
        message_id=original.message_id,
        device_id=original.device_id,
        accepted_at=original.accepted_at,
        readings=records.validated_data["readings"],
        events=[dict(event) for event in records.validated_data["events"]],
    ).to_body()


def _body_pretty_lines(body: bytes) -> list[str]:
    try:
        return json.dumps(json.loads(body), indent=2, sort_keys=True).splitlines()
    except ValueError:  # not JSON, or not UTF-8: compared as text
        return body.decode("utf-8", "backslashreplace").splitlines()


def body_diff(original: bytes, edited: bytes) -> str:
    """A unified diff of two bodies, as pretty JSON with sorted keys: only real changes show."""
    return "\n".join(
        difflib.unified_diff(
            _body_pretty_lines(original), _body_pretty_lines(edited), "original", "edited", lineterm=""
        )
    )


def dead_letter_version(dead_letter: DeadLetter) -> str:
    """What an operator looked at: the body and the latest action on it.

    A diff is confirmed against this: if the message was requeued, died again or was
    edited by someone else in between, the version differs and the confirm is refused.
    """
    latest = dead_letter.actions.order_by("-at", "-id").values_list("id", flat=True).first()
    digest = hashlib.sha256(bytes(dead_letter.body))
    digest.update(f"|{latest}".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class EditPreview:
    """An edit checked and not sent: what would be requeued, and how it differs from the original."""

    body: bytes
    diff: str
    version: str  # dead_letter_version() of the original it was made against


def dead_letter_edit_preview(*, dead_letter_id: int, edited_body: str, reason: str) -> EditPreview:
    """Check an edit as ``dead_letter_requeue`` would, without sending anything."""
    try:
        dead_letter = DeadLetter.objects.get(pk=dead_letter_id)
    except DeadLetter.DoesNotExist:
        raise ApplicationError(f"no dead letter {dead_letter_id}", code="not_found") from None
    if dead_letter.status != DeadLetter.Status.DEAD:
        raise ApplicationError(
            f"dead letter {dead_letter_id} is already {dead_letter.status}", code="conflict"
        )
    reason_require(reason, to="edit a message")
    body = _edited_body_check(dead_letter, edited_body)
    return EditPreview(body, body_diff(bytes(dead_letter.body), body), dead_letter_version(dead_letter))


def _requeue_message(
    dead_letter_id: int, message_id: str, kind: str, body: bytes, original_routing_key: str
) -> OutgoingMessage:
    """The message to send again: to the main queue, or an MQTT publish back to its topic.

    A refused MQTT publish is not a pipeline message: it goes back through the bridge,
    which checks it again as a new publish on the same topic.
    """
    return OutgoingMessage(
        message_id=message_id,
        body=body,
        message_type=kind,
        # No failure history: a requeued message gets all its attempts again.
        headers={HEADER_SCHEMA_VERSION: SCHEMA_VERSION, "x-requeued-from": dead_letter_id},
        destination=(MQTT_EXCHANGE, original_routing_key) if kind == MQTT_PUBLISH else None,
    )


def dead_letter_requeue(
    *,
    dead_letter_id: int,
    actor: AbstractBaseUser | None,
    reason: str = "",
    edited_body: str | None = None,
    expected_version: str | None = None,
) -> DeadLetter:
    """Publish the dead letter (or an edited body) back to the main queue, then mark it requeued.

    The row stays locked while publishing, so two operators cannot requeue it twice. It is
    marked requeued only after the broker confirmed; if the database then fails to commit,
    the message may be requeued again later, which the ledger makes harmless.
    With ``expected_version`` (``dead_letter_version`` of what the operator reviewed), a
    message that changed since is refused rather than requeued with a diff nobody saw.
    """
    with transaction.atomic():
        dead_letter = _locked_dead_letter(dead_letter_id)
        if expected_version is not None and expected_version != dead_letter_version(dead_letter):
            raise ApplicationError(
                f"message {dead_letter.message_id} changed after the diff was shown (it was requeued,"
                " failed again or was edited meanwhile): nothing was sent; review the edit again",
                code="conflict",
            )
        if dead_letter.kind == MQTT_PUBLISH and not settings.MQTT_ENABLED:
            raise ApplicationError(
                "MQTT is off here (MQTT_ENABLED): no bridge takes a publish back from its topic, so"
                " nothing was sent; requeue it where MQTT is on, or discard it",
                code="conflict",
            )
        previous_body = bytes(dead_letter.body)
        body = previous_body
        action = DeadLetterAction.Action.REQUEUED
        if edited_body is not None:
            reason_require(reason, to="edit a message")
            body = _edited_body_check(dead_letter, edited_body)
            action = DeadLetterAction.Action.EDITED_AND_REQUEUED
        message_publish_confirmed(
            outgoing=_requeue_message(
                dead_letter.pk,
                str(dead_letter.message_id),
                dead_letter.kind,
                body,
                dead_letter.original_routing_key,
            )
        )
        REQUEUED.inc()
        dead_letter.status = DeadLetter.Status.REQUEUED
        if body != previous_body:
            dead_letter.body = body
            dead_letter.body_text = body_text_of(body)
        dead_letter.save()
        DeadLetterAction.objects.create(
            dead_letter=dead_letter,
            action=action,
            actor=actor,
            actor_name=_actor_name(actor),
            reason=reason,
            previous_body=previous_body if body != previous_body else None,
            body_diff=body_diff(previous_body, body) if edited_body is not None else "",
        )
    return dead_letter


@transaction.atomic
def dead_letter_discard(*, dead_letter_id: int, actor: AbstractBaseUser | None, reason: str) -> DeadLetter:
    """Give up on a dead letter for good; the row and its audit trail stay."""
    reason_require(reason, to="discard a message")
    dead_letter = _locked_dead_letter(dead_letter_id)
    dead_letter.status = DeadLetter.Status.DISCARDED
    dead_letter.save(update_fields=["status", "updated_at"])
    DeadLetterAction.objects.create(
        dead_letter=dead_letter,
        action=DeadLetterAction.Action.DISCARDED,
        actor=actor,
        actor_name=_actor_name(actor),
        reason=reason,
    )
    return dead_letter


def _mark_many(
    dead_letter_ids: list[int], *, status: str, action: str, actor, reason: str, bulk_job_id: int | None
) -> None:
    """Set the status of many dead letters and audit each, in two statements whatever the count.

    Set-based on purpose: a bulk requeue marks thousands of rows per chunk, and an ORM
    object (or a parameter) per row costs more than the rows themselves.
    """
    if not dead_letter_ids:
        return
    now = timezone.now()
    DeadLetter.objects.filter(pk__in=ids_array(dead_letter_ids)).update(status=status, updated_at=now)
    audit = DeadLetterAction._meta
    columns = {
        name: audit.get_field(name).column
        for name in ("dead_letter", "action", "actor", "actor_name", "reason", "at", "bulk_job_id")
    }
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {audit.db_table} ({", ".join(columns.values())})
                SELECT dead_letter_id, %s, %s, %s, %s, %s, %s FROM unnest(%s::bigint[]) AS dead_letter_id""",
            [
                action,
                actor.pk if actor is not None else None,
                _actor_name(actor),
                reason,
                now,
                bulk_job_id,
                dead_letter_ids,
            ],
        )


def ids_array(ids: list[int]):
    """``pk__in`` as one array parameter (``= ANY(%s)``), not one parameter per id."""
    return RawSQL("SELECT unnest(%s::bigint[])", [ids])


@dataclass(frozen=True)
class _DeadLetterToRequeue:
    pk: int
    message_id: str
    kind: str
    body: bytes
    original_routing_key: str


def _still_dead_locked(dead_letter_ids: list[int]) -> list[int]:
    """The ids still dead, locked; rows another transaction holds are skipped, not waited for."""
    return list(
        DeadLetter.objects.select_for_update(skip_locked=True)
        .filter(pk__in=ids_array(dead_letter_ids), status=DeadLetter.Status.DEAD)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


class RequeueIncomplete(ApplicationError):
    """The broker confirmed only part of a bulk requeue: those are marked, the rest stay dead."""

    def __init__(self, *, requeued: int, left_dead: int) -> None:
        super().__init__(
            f"The message broker did not confirm every message; the unconfirmed ones stay dead "
            f"({requeued} requeued, {left_dead} left dead). Retry later.",
            code="broker_unavailable",
        )
        self.requeued = requeued
        self.left_dead = left_dead


def dead_letters_requeue_many(
    *,
    dead_letter_ids: list[int],
    actor: AbstractBaseUser | None,
    reason: str = "",
    bulk_job_id: int | None = None,
) -> int:
    """Requeue every still-dead letter among the ids; return how many were requeued.

    In one transaction: the rows are locked (rows another transaction holds are skipped,
    not waited for), every message is published with many confirms in flight at once,
    and only the ones the broker confirmed are marked requeued and audited. A crash
    before the commit leaves all of them dead, some perhaps already on the queue again:
    requeuing them once more is harmless, the ledger stores a message once. If the
    broker fails part-way, the confirmed ones are still marked, then ``RequeueIncomplete``
    says how many stay dead.
    """
    with transaction.atomic():
        letters = [
            _DeadLetterToRequeue(pk, str(message_id), kind, bytes(body), original_routing_key)
            for pk, message_id, kind, body, original_routing_key in DeadLetter.objects.select_for_update(
                skip_locked=True
            )
            .filter(pk__in=ids_array(dead_letter_ids), status=DeadLetter.Status.DEAD)
            .order_by("pk")
            .values_list("pk", "message_id", "kind", "body", "original_routing_key")
        ]
        confirmed, failure = publish_many_confirmed(
            _requeue_message(
                letter.pk, letter.message_id, letter.kind, letter.body, letter.original_routing_key
            )
            for letter in letters
        )
        published = [letter.pk for letter in letters if letter.message_id in confirmed]
        _mark_many(
            published,
            status=DeadLetter.Status.REQUEUED,
            action=DeadLetterAction.Action.REQUEUED,
            actor=actor,
            reason=reason,
            bulk_job_id=bulk_job_id,
        )
    REQUEUED.inc(len(published))
    if failure is not None:
        raise RequeueIncomplete(requeued=len(published), left_dead=len(letters) - len(published)) from failure
    return len(published)


@transaction.atomic
def dead_letters_discard_many(
    *, dead_letter_ids: list[int], actor: AbstractBaseUser | None, reason: str, bulk_job_id: int | None = None
) -> int:
    """Discard every still-dead letter among the ids; return how many were discarded."""
    reason_require(reason, to="discard messages")
    letters = _still_dead_locked(dead_letter_ids)
    _mark_many(
        letters,
        status=DeadLetter.Status.DISCARDED,
        action=DeadLetterAction.Action.DISCARDED,
        actor=actor,
        reason=reason,
        bulk_job_id=bulk_job_id,
    )
    return len(letters)
