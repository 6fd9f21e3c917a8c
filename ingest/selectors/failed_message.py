"""Reads for one failed message's page: its body as shown, the record at fault, its device, its proof.

A body can be megabytes: the page shows at most ``DEAD_LETTER_BODY_DISPLAY_BYTES`` of it
and links to the whole for download, so a page stays small whatever was sent.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from rest_framework import serializers

from config.replica import read_connection
from ingest.json_input import JsonInputError, json_parse
from ingest.messages import DEVICE_BATCH, FailureEnvelope, UndecodableMessage, message_decode
from ingest.models import DeadLetter, DeadLetterAction, Device, IngestMessage, SensorReading
from ingest.mqtt.payloads import MQTT_PUBLISH
from ingest.record_validation import (
    EventInputSerializer,
    InstantWindow,
    InvalidValue,
    reading_validate,
)
from ingest.selectors.dead_letters import BODY_HEX_MAX_BYTES, BodyView, dead_letter_body_view

# --- the body ------------------------------------------------------------------------


@dataclass(frozen=True)
class ShownBody:
    """The body as the page shows it: whole up to the display limit, else its head."""

    view: BodyView  # text (or escaped text) and hex of what is shown
    size: int  # bytes of the whole body
    shown_bytes: int  # bytes of it that ``view`` holds
    is_json: bool

    @property
    def is_truncated(self) -> bool:
        return self.shown_bytes < self.size


def body_display_limit() -> int:
    return settings.DEAD_LETTER_BODY_DISPLAY_BYTES


def body_edit_limit() -> int:
    return settings.DEAD_LETTER_EDIT_MAX_BYTES


# What an operator may edit before requeuing: a device's records (the message around them
# stays), or a device's whole MQTT payload (its topic stays). A partner's webhook event is
# signed by the partner, so it is never edited.
EDITABLE_KINDS = (DEVICE_BATCH, MQTT_PUBLISH)


def failed_message_editable(dead_letter: DeadLetter) -> bool:
    return dead_letter.kind in EDITABLE_KINDS


def failed_message_edit_text(dead_letter: DeadLetter, shown: ShownBody) -> str | None:
    """The whole body as text to edit in the page, or None where it cannot be edited there.

    An edit always starts from the whole body, never from the head the page shows; a
    body over ``DEAD_LETTER_EDIT_MAX_BYTES`` (more than the ingest API accepts at once) or
    one that is not text is not offered for editing in a text box.
    """
    if not failed_message_editable(dead_letter) or shown.view.is_binary or shown.size > body_edit_limit():
        return None
    if not shown.is_truncated:
        return shown.view.text
    whole = dead_letter_body_view(dead_letter)
    return None if whole.is_binary else whole.text


def failed_message_body(dead_letter: DeadLetter) -> ShownBody:
    body = bytes(dead_letter.body)
    limit = body_display_limit()
    if len(body) <= limit:
        view = dead_letter_body_view(dead_letter)
        return ShownBody(view, len(body), len(body), is_json_body(body) if not view.is_binary else False)
    head = body[:limit]
    try:
        # Not final: a character cut in two at the limit is left out, not shown as an error.
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        escaped = codecs.escape_encode(head)[0].decode("ascii")
        view = BodyView(escaped, True, len(body), head[:BODY_HEX_MAX_BYTES].hex(" "))
        return ShownBody(view, len(body), len(head), False)
    shown = len(text.encode("utf-8"))
    return ShownBody(
        BodyView(text, False, len(body), ""), len(body), shown, head.lstrip()[:1] in (b"{", b"[")
    )


def is_json_body(body: bytes) -> bool:
    try:
        json_parse(body, max_depth=None)
    except JsonInputError:
        return False
    return True


def body_download_name(dead_letter: DeadLetter, *, is_json: bool) -> str:
    return f"failed-message-{dead_letter.message_id}.{'json' if is_json else 'bin'}"


# --- the record at fault ------------------------------------------------------------------


@dataclass(frozen=True)
class FailedRecord:
    """One record of a batch named as the cause, and why."""

    place: str  # "readings[3]"
    reason: str
    record: str  # the record as pretty JSON
    source: str  # how it is known: "the error" or "the ingest API's checks"


MAX_FAILED_RECORDS = 20
# Where the worker or the database name a record in an error message.
_PLACE = re.compile(r"\b(readings|events)(?:\[(\d+)\]|\.(\d+)\b)")
# A COPY error: "CONTEXT:  COPY sensor_readings, line 4, column metric". The worker stores
# a failing message alone (one by one), so the line is the message's own reading.
_COPY_LINE = re.compile(r"COPY (?:sensor_readings|ingest_readings_staging), line (\d+)")
# A refused event row: "Failing row contains (id, device_id, event_type, severity, ...".
_EVENT_ROW = re.compile(
    r'relation "device_events".*?Failing row contains \(\d+, \d+, ([^,]*), (-?\d+),', re.S
)


def _records_of(dead_letter: DeadLetter) -> dict | None:
    if dead_letter.kind != DEVICE_BATCH:
        return None
    try:
        data = json_parse(bytes(dead_letter.body), max_depth=None)
    except JsonInputError:
        return None
    if not isinstance(data, dict):
        return None
    readings, events = data.get("readings"), data.get("events")
    return {
        "readings": readings if isinstance(readings, list) else [],
        "events": events if isinstance(events, list) else [],
        "accepted_at": data.get("accepted_at"),
    }


RECORD_DISPLAY_CHARS = 4000


def _pretty(record) -> str:
    """The record as pretty JSON, cut short if huge (an event's detail can be megabytes)."""
    text = json.dumps(record, indent=2, sort_keys=True, default=str)
    if len(text) <= RECORD_DISPLAY_CHARS:
        return text
    return f"{text[:RECORD_DISPLAY_CHARS]}\n… ({len(text) - RECORD_DISPLAY_CHARS:,} more characters: download the body)"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _named_by_the_error(dead_letter: DeadLetter, records: dict) -> list[tuple[str, int, str]]:
    message = dead_letter.error_message
    reason = _first_line(message)
    found: list[tuple[str, int, str]] = []
    for match in _PLACE.finditer(message):
        found.append((match[1], int(match[2] or match[3]), reason))
    if match := _COPY_LINE.search(message):
        found.append(("readings", int(match[1]) - 1, reason))
    if match := _EVENT_ROW.search(message):
        event_type, severity = match[1], int(match[2])
        for index, event in enumerate(records["events"]):
            if (
                isinstance(event, dict)
                and event.get("event_type") == event_type
                and event.get("severity") == severity
            ):
                found.append(("events", index, reason))
                break
    return found


def _refused_by_the_api(records: dict) -> list[tuple[str, int, str]]:
    """Records the ingest API's checks refuse, the time window judged at when it was accepted."""
    try:
        accepted_at = datetime.fromisoformat(str(records["accepted_at"]))
    except ValueError:
        return []
    if accepted_at.tzinfo is None:
        return []
    found = []
    window = InstantWindow.at(accepted_at)
    for index, item in enumerate(records["readings"]):
        _, errors = reading_validate(item, window=window)
        if errors:
            found.append(("readings", index, _errors_line(errors)))
        if len(found) >= MAX_FAILED_RECORDS:
            return found
    for index, item in enumerate(records["events"]):
        errors = _event_errors(item, window)
        if errors:
            found.append(("events", index, _errors_line(errors)))
        if len(found) >= MAX_FAILED_RECORDS:
            break
    return found


def _event_errors(item, window: InstantWindow) -> dict:
    try:
        EventInputSerializer().run_validation(item)
        errors = {}
    except serializers.ValidationError as error:
        errors = dict(error.detail) if isinstance(error.detail, dict) else {"event": error.detail}
    # The API judged the time when it accepted the message, not today.
    errors.pop("occurred_at", None)
    if isinstance(item, dict) and "occurred_at" in item:
        try:
            window.parse(item["occurred_at"])
        except InvalidValue as error:
            errors["occurred_at"] = [str(error)]
    return errors


def _errors_line(errors: dict) -> str:
    return "; ".join(
        f"{field}: {' '.join(str(reason) for reason in reasons) if isinstance(reasons, list) else reasons}"
        for field, reasons in errors.items()
    )


def failed_records(dead_letter: DeadLetter) -> list[FailedRecord]:
    """The records of a device batch known to have failed it, when that can be known.

    First what the error itself names (the worker names a record it could not read, a COPY
    names its line, a refused event row its values); else the records the ingest API
    would have refused. An error about the whole message (an unknown device) names none.
    """
    records = _records_of(dead_letter)
    if records is None:
        return []
    found, source = _named_by_the_error(dead_letter, records), "the error"
    if not found:
        found, source = _refused_by_the_api(records), "the ingest API's checks"
    failed, seen = [], set()
    for name, index, reason in found:
        if (name, index) in seen or not 0 <= index < len(records[name]):
            continue
        seen.add((name, index))
        failed.append(FailedRecord(f"{name}[{index}]", reason, _pretty(records[name][index]), source))
    return failed[:MAX_FAILED_RECORDS]


# --- the device and the headers --------------------------------------------------------------


@dataclass(frozen=True)
class MessageDevice:
    device_id: int
    serial_no: str | None  # None: no row in ``devices`` (deleted, or never registered)

    @property
    def exists(self) -> bool:
        return self.serial_no is not None


def failed_message_device(dead_letter: DeadLetter) -> MessageDevice | None:
    if dead_letter.device_id is None:
        return None
    serial_no = Device.objects.filter(pk=dead_letter.device_id).values_list("serial_no", flat=True).first()
    return MessageDevice(dead_letter.device_id, serial_no)


def device_serials_attach(dead_letters: list[DeadLetter]) -> list[DeadLetter]:
    """Give each dead letter of a page ``device_serial`` (None where the device is gone).

    One query for the page, after paging: never a lookup per row of a filtered sort.
    """
    device_ids = {dead_letter.device_id for dead_letter in dead_letters if dead_letter.device_id is not None}
    serials = (
        dict(Device.objects.filter(pk__in=device_ids).values_list("pk", "serial_no")) if device_ids else {}
    )
    for dead_letter in dead_letters:
        dead_letter.device_serial = serials.get(dead_letter.device_id)
    return dead_letters


def relayed_devices_attach(dead_letters: list[DeadLetter]) -> list[DeadLetter]:
    """Give each dead letter of a page ``relayed_devices`` from the ledger (0: not a gateway's).

    One query for the page, as ``device_serials_attach``.
    """
    message_ids = [dead_letter.message_id for dead_letter in dead_letters]
    relayed = (
        dict(
            IngestMessage.objects.filter(message_id__in=message_ids, relayed_devices__gt=0).values_list(
                "message_id", "relayed_devices"
            )
        )
        if message_ids
        else {}
    )
    for dead_letter in dead_letters:
        dead_letter.relayed_devices = relayed.get(dead_letter.message_id, 0)
    return dead_letters


def failed_message_headers(dead_letter: DeadLetter) -> str:
    """The headers as pretty JSON, less the traceback (the page shows it once, on its own)."""
    headers = FailureEnvelope.without_traceback(dead_letter.headers)
    return json.dumps(headers, indent=2, sort_keys=True, default=str)


# --- the exactly-once proof -------------------------------------------------------------


@dataclass(frozen=True)
class ReadingsPresent:
    present: int
    carried: int


READINGS_CHECK_MAX = 10_000


def readings_present(dead_letter: DeadLetter) -> ReadingsPresent | None:
    """How many of the message's readings are in ``sensor_readings`` now, by their points.

    The ledger says the message was stored; this looks in the customer's table itself,
    through its unique index (one probe a reading). None when it cannot be told: not a
    device batch, not readable, or more readings than are worth probing for a page.
    """
    try:
        message = message_decode(bytes(dead_letter.body))
    except UndecodableMessage:
        return None
    readings = getattr(message, "readings", None)
    if not readings or len(readings) > READINGS_CHECK_MAX:
        return None
    with read_connection(SensorReading).cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM unnest(%s::varchar[], %s::timestamptz[]) AS point(metric, measured_at)
            WHERE EXISTS (SELECT 1 FROM sensor_readings s
                          WHERE s.device_id = %s AND s.metric = point.metric AND s.measured_at = point.measured_at)
            """,
            [
                [reading["metric"] for reading in readings],
                [reading["measured_at"] for reading in readings],
                message.device_id,
            ],
        )
        return ReadingsPresent(cursor.fetchone()[0], len(readings))


# --- an edit's diff --------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "added", "removed", "hunk", "file" or "same"
    text: str


@dataclass(frozen=True)
class ActionLine:
    action: DeadLetterAction
    diff: list[DiffLine]


def failed_message_actions(dead_letter: DeadLetter) -> list[ActionLine]:
    """The message's audit trail, each edit with the diff the operator confirmed."""
    return [ActionLine(action, diff_lines(action.body_diff)) for action in dead_letter.actions.all()]


def diff_lines(diff: str) -> list[DiffLine]:
    lines = []
    for text in diff.splitlines():
        if text.startswith(("+++", "---")):
            kind = "file"
        elif text.startswith("@@"):
            kind = "hunk"
        elif text.startswith("+"):
            kind = "added"
        elif text.startswith("-"):
            kind = "removed"
        else:
            kind = "same"
        lines.append(DiffLine(kind, text))
    return lines
