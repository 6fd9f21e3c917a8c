"""Validation of device records, shared by every way data enters the pipeline.

Readings arrive by the thousand per request, so they are checked by plain functions
(``reading_validate``) rather than one DRF serializer per item: a nested DRF serializer
costs about 18 µs a reading, which alone would cap a web worker near 55,000 readings/s.
Events use the same checks through small DRF fields. Errors keep DRF's shape:
``{"readings": {"<index>": {"<field>": ["<reason>"]}}}``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from ingest.json_input import json_value_problem, text_problem
from ingest.relaying import field_errors_merge, relayed_devices_resolve
from ingest.schema import RECORD_DEVICE_HELP, ReadingDocSerializer

NAME_PATTERN = re.compile(r"\A[a-z][a-z0-9_]{0,31}\Z")
NAME_HELP = "a lower-case letter, then up to 31 lower-case letters, digits or '_'"
UNIT_MAX_LENGTH = 16
DETAIL_MAX_BYTES = 8 * 1024
REQUIRED = "This field is required."


class InvalidValue(ValueError):
    """A field value refused, with the reason shown to the sender."""


def name_parse(value: Any) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise InvalidValue(f"Must be {NAME_HELP}.")
    return value


def finite_number_parse(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue("Must be a JSON number.")
    try:
        number = float(value)
    except OverflowError:
        raise InvalidValue("Must be a finite number (this one is too large).") from None
    if not math.isfinite(number):
        raise InvalidValue("Must be a finite number (NaN and Infinity are refused).")
    return number


def unit_parse(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidValue("Must be a string or null.")
    if problem := text_problem(value):
        raise InvalidValue(problem)
    if len(value) > UNIT_MAX_LENGTH:
        raise InvalidValue(f"Ensure this field has no more than {UNIT_MAX_LENGTH} characters.")
    return value


@dataclass(frozen=True)
class InstantWindow:
    """The record times accepted at ``now``: the settings read once for a whole list of records."""

    latest: datetime
    earliest: datetime
    skew_seconds: int
    max_age_days: int

    @classmethod
    def at(cls, now: datetime) -> InstantWindow:
        skew_seconds = settings.INGEST_MAX_CLOCK_SKEW_SECONDS
        max_age_days = settings.INGEST_MAX_AGE_DAYS
        return cls(
            latest=now + timedelta(seconds=skew_seconds),
            earliest=now - timedelta(days=max_age_days),
            skew_seconds=skew_seconds,
            max_age_days=max_age_days,
        )

    def parse(self, value: Any) -> datetime:
        """ISO 8601 with an explicit zone, not too far in the future nor too old."""
        if not isinstance(value, str):
            raise InvalidValue("Must be an ISO 8601 date-time string.")
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidValue(
                "Datetime has wrong format. Use ISO 8601, e.g. 2026-11-23T07:00:00Z."
            ) from None
        return self.check(instant)

    def check(self, instant: datetime) -> datetime:
        if instant.tzinfo is None:
            raise InvalidValue("Must include a time zone (e.g. 'Z' or '+01:00').")
        if instant > self.latest:
            raise InvalidValue(f"Is more than {self.skew_seconds} s in the future.")
        if instant < self.earliest:
            raise InvalidValue(f"Is more than {self.max_age_days} days old.")
        return instant


def instant_parse(value: Any, *, now: datetime) -> datetime:
    """ISO 8601 with an explicit zone, not too far in the future nor too old."""
    return InstantWindow.at(now).parse(value)


def reading_validate(item: Any, *, window: InstantWindow) -> tuple[dict | None, dict | None]:
    """One reading: ``(reading, None)`` when valid, ``(None, {field: [reason]})`` when not."""
    if not isinstance(item, dict):
        return None, {"non_field_errors": ["Must be a JSON object."]}
    errors: dict[str, list[str]] = {}
    reading: dict[str, Any] = {}
    for field, parse in (
        ("metric", name_parse),
        ("value", finite_number_parse),
        ("measured_at", window.parse),
    ):
        if field not in item:
            errors[field] = [REQUIRED]
            continue
        try:
            reading[field] = parse(item[field])
        except InvalidValue as error:
            errors[field] = [str(error)]
    try:
        reading["unit"] = unit_parse(item.get("unit"))
    except InvalidValue as error:
        errors["unit"] = [str(error)]
    return (None, errors) if errors else (reading, None)


# A reading whose fields arrived with their types (a gRPC chunk's): metric, value, unit,
# and measured_at as text or as an aware datetime; None for a field that was not sent.
TypedReading = tuple[str | None, float | None, str | None, str | datetime | None]


def typed_readings_validate(readings: Iterable[TypedReading], *, now: datetime) -> list[dict] | None:
    """Readings alone, by ``DeviceRecordsSerializer``'s rules, without a JSON-shaped dict each.

    The same parse functions as ``reading_validate``, so the same rules and limits. Returns
    what the serializer's ``validated_data["readings"]`` would be, or None when it would
    refuse anything (a reading, an empty list, more than INGEST_MAX_RECORDS): the caller
    then asks the serializer, which alone words errors, so that they are the same whatever
    the entrance. Records naming a ``device`` (a gateway's) go to the serializer too.
    """
    window = InstantWindow.at(now)
    # A device repeats a few metrics and units: each distinct one is checked once.
    metrics: set[str] = set()
    units: set[str | None] = {None}
    validated = []
    try:
        for metric, value, unit, measured_at in readings:
            if metric not in metrics:
                metrics.add(name_parse(metric))
            if unit not in units:
                units.add(unit_parse(unit))
            validated.append(
                {
                    "metric": metric,
                    "value": finite_number_parse(value),
                    "measured_at": window.parse(measured_at)
                    if isinstance(measured_at, str | None)
                    else window.check(measured_at),
                    "unit": unit,
                }
            )
    except InvalidValue:
        return None
    if not 0 < len(validated) <= settings.INGEST_MAX_RECORDS:
        return None
    return validated


@extend_schema_field(ReadingDocSerializer(many=True))
class ReadingsField(serializers.Field):
    """A list of readings (see ``reading_validate``)."""

    def to_internal_value(self, data):
        if not isinstance(data, list):
            raise serializers.ValidationError("Must be a list of readings.")
        window = InstantWindow.at(timezone.now())
        readings, errors = [], {}
        for index, item in enumerate(data):
            reading, item_errors = reading_validate(item, window=window)
            if item_errors:
                errors[index] = item_errors
            else:
                readings.append(reading)
        if errors:
            raise serializers.ValidationError(errors)
        return readings

    def to_representation(self, value):
        return value


class _ParsedField(serializers.Field):
    """A DRF field around one of the parse functions above."""

    def parse(self, data):
        raise NotImplementedError

    def to_internal_value(self, data):
        try:
            return self.parse(data)
        except InvalidValue as error:
            raise serializers.ValidationError(str(error)) from None

    def to_representation(self, value):
        return value


@extend_schema_field({"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$"})
class NameField(_ParsedField):
    def parse(self, data):
        return name_parse(data)


@extend_schema_field({"type": "string", "format": "date-time"})
class RecentZonedDateTimeField(_ParsedField):
    def parse(self, data):
        return instant_parse(data, now=timezone.now())


class EventInputSerializer(serializers.Serializer):
    event_type = NameField()
    severity = serializers.IntegerField(min_value=0, max_value=3, required=False, default=0)
    occurred_at = RecentZonedDateTimeField()
    detail = serializers.DictField(required=False, default=dict)

    def validate_detail(self, detail):
        # What jsonb cannot hold is refused here, not dead-lettered by the worker later.
        if problem := json_value_problem(detail):
            place, reason = problem
            raise serializers.ValidationError(f"{reason} (at '{place}')")
        encoded = json.dumps(detail, separators=(",", ":"))
        if len(encoded.encode()) > DETAIL_MAX_BYTES:
            raise serializers.ValidationError(f"Must be at most {DETAIL_MAX_BYTES} bytes as JSON.")
        return detail


class EventDocSerializer(EventInputSerializer):
    """Documentation of one event: ``device`` is checked with the request (``ingest.relaying``)."""

    device = serializers.CharField(max_length=64, required=False, help_text=RECORD_DEVICE_HELP)


@extend_schema_field(EventDocSerializer(many=True))
class EventsField(serializers.Field):
    """A list of events, each checked by ``EventInputSerializer``, with ListSerializer's errors.

    A nested ``EventInputSerializer(many=True)`` would be deep-copied with the request's
    serializer on every request (about 150 µs, a tenth of a one-reading request), events
    or not; this field builds its one child only when there are events.
    """

    def to_internal_value(self, data):
        if not isinstance(data, list):
            raise serializers.ValidationError(
                {"non_field_errors": [f'Expected a list of items but got type "{type(data).__name__}".']},
                code="not_a_list",
            )
        if not data:
            return []
        child = EventInputSerializer()
        events, errors = [], {}
        for index, item in enumerate(data):
            try:
                events.append(child.run_validation(item))
            except serializers.ValidationError as error:
                errors[index] = error.detail
        if errors:
            raise serializers.ValidationError(errors)  # by index, as readings and ListSerializer
        return events

    def to_representation(self, value):
        return value


@extend_schema_serializer(component_name="IngestRequest")
class DeviceRecordsSerializer(serializers.Serializer):
    """A device's readings and events as the ingest API accepts them.

    Also what an operator's edit of a failed message must pass: one set of rules for
    what may reach the worker, whoever sends it. The sender is ``context["device"]``: a
    gateway may name another device of its household in a record's ``device`` (see
    ``ingest.relaying``); the record then carries that device's ``device_id`` on.
    """

    readings = ReadingsField(required=False, default=list)
    events = EventsField(required=False, default=list)

    def to_internal_value(self, data):
        # The records' devices are checked even when other fields fail: one answer names
        # every bad record, whatever is wrong with it.
        relayed = relayed_devices_resolve(sender=self.context.get("device"), data=data)
        try:
            validated = super().to_internal_value(data)
        except serializers.ValidationError as error:
            raise serializers.ValidationError(field_errors_merge(error.detail, relayed.errors)) from None
        if relayed.errors:
            raise serializers.ValidationError(relayed.errors)
        relayed.attach(validated)
        return validated

    def validate(self, data):
        total = len(data["readings"]) + len(data["events"])
        limit = settings.INGEST_MAX_RECORDS
        if total == 0:
            raise serializers.ValidationError({"non_field_errors": ["Send at least one reading or event."]})
        if total > limit:
            raise serializers.ValidationError(
                {"non_field_errors": [f"At most {limit} records per request; got {total}."]}
            )
        return data


@dataclass(frozen=True)
class RecordsSplit:
    readings: list[dict]
    events: list[dict]
    rejections: list[dict]  # {"kind": "reading"|"event", "index": n, "errors": {...}}

    @property
    def total(self) -> int:
        return len(self.readings) + len(self.events) + len(self.rejections)


def device_records_split(data: dict) -> RecordsSplit:
    """Validate each record of ``{"readings": [...], "events": [...]}`` on its own.

    For sources that cannot be asked to resend (collection, file import): the valid
    records go on, each invalid one is reported with its reasons.
    """
    window = InstantWindow.at(timezone.now())
    readings, events, rejections = [], [], []
    raw_readings = data.get("readings") or []
    raw_events = data.get("events") or []
    if not isinstance(raw_readings, list) or not isinstance(raw_events, list):
        return RecordsSplit(
            [],
            [],
            [
                {
                    "kind": "body",
                    "index": 0,
                    "errors": {"non_field_errors": ["'readings' and 'events' must be lists."]},
                }
            ],
        )
    for index, item in enumerate(raw_readings):
        reading, errors = reading_validate(item, window=window)
        if errors:
            rejections.append({"kind": "reading", "index": index, "errors": errors})
        else:
            readings.append(reading)
    for index, item in enumerate(raw_events):
        serializer = EventInputSerializer(data=item)
        if serializer.is_valid():
            events.append(dict(serializer.validated_data))
        else:
            rejections.append({"kind": "event", "index": index, "errors": serializer.errors})
    return RecordsSplit(readings, events, rejections)
