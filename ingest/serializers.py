"""Validation of device records, shared by every way data enters the pipeline."""

from __future__ import annotations

import json
import math
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

NAME_PATTERN = r"\A[a-z][a-z0-9_]{0,31}\Z"
NAME_HELP = "a lower-case letter, then up to 31 lower-case letters, digits or '_'"
DETAIL_MAX_BYTES = 8 * 1024


class FiniteNumberField(serializers.Field):
    """A JSON number that is finite: no strings, booleans, NaN or Infinity."""

    default_error_messages = {
        "invalid": "Must be a JSON number.",
        "not_finite": "Must be a finite number (NaN and Infinity are refused).",
    }

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        if not math.isfinite(data):
            self.fail("not_finite")
        return float(data)

    def to_representation(self, value):
        return value


class RecentZonedDateTimeField(serializers.DateTimeField):
    """ISO 8601 with an explicit zone, not too far in the future nor too old."""

    default_error_messages = {
        "naive": "Must include a time zone (e.g. 'Z' or '+01:00').",
        "future": "Is more than {seconds} s in the future.",
        "too_old": "Is more than {days} days old.",
    }

    def enforce_timezone(self, value):
        if timezone.is_naive(value):
            self.fail("naive")
        return super().enforce_timezone(value)

    def to_internal_value(self, value):
        instant = super().to_internal_value(value)
        now = timezone.now()
        skew = settings.INGEST_MAX_CLOCK_SKEW_SECONDS
        if instant > now + timedelta(seconds=skew):
            self.fail("future", seconds=skew)
        max_age_days = settings.INGEST_MAX_AGE_DAYS
        if instant < now - timedelta(days=max_age_days):
            self.fail("too_old", days=max_age_days)
        return instant


class ReadingInputSerializer(serializers.Serializer):
    metric = serializers.RegexField(NAME_PATTERN, error_messages={"invalid": f"Must be {NAME_HELP}."})
    value = FiniteNumberField()
    unit = serializers.CharField(max_length=16, required=False, allow_null=True)
    measured_at = RecentZonedDateTimeField()


class EventInputSerializer(serializers.Serializer):
    event_type = serializers.RegexField(
        NAME_PATTERN, error_messages={"invalid": f"Must be {NAME_HELP}."}
    )
    severity = serializers.IntegerField(min_value=0, max_value=3, required=False, default=0)
    occurred_at = RecentZonedDateTimeField()
    detail = serializers.DictField(required=False, default=dict)

    def validate_detail(self, detail):
        if len(json.dumps(detail, separators=(",", ":")).encode()) > DETAIL_MAX_BYTES:
            raise serializers.ValidationError(f"Must be at most {DETAIL_MAX_BYTES} bytes as JSON.")
        return detail
