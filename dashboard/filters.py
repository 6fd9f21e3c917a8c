"""The console's filter vocabulary: every list filter, bulk selection and page cursor is parsed here.

Lists, bulk jobs created from "everything matching the filter" and page links all go
through these forms. A value that cannot be understood is a form error naming the field:
never a 500, and never silently dropped (a filter quietly ignored shows, or acts on, more
rows than the operator asked for).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from django import forms
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.errors import ApplicationError
from ingest.models import DeadLetter

# Primary keys are PostgreSQL bigints: a larger number is no id (and would be a DataError).
ID_MAX = 2**63 - 1
TEXT_MAX_LENGTH = 200
ASCII_DIGITS = frozenset("0123456789")


class ReferenceField(forms.CharField):
    """A record by its id (digits 0-9) or by text (a serial number, a name): int or str."""

    def __init__(self, *, text_meaning: str, **kwargs):
        self.text_meaning = text_meaning
        super().__init__(required=False, max_length=TEXT_MAX_LENGTH, **kwargs)

    def clean(self, value):
        value = super().clean(value)
        if not value:
            return None
        if all(character in ASCII_DIGITS for character in value):
            if int(value) > ID_MAX:
                raise forms.ValidationError("No id is this large.", code="invalid")
            return int(value)
        # "²" or "٣" are digits to str.isdigit() but no id and no plausible serial or name.
        if any(character.isdigit() for character in value if character not in ASCII_DIGITS):
            raise forms.ValidationError(
                f"Enter an id (digits 0-9) or {self.text_meaning}; {value!r} contains other digits.",
                code="invalid",
            )
        return value


class InstantField(forms.DateTimeField):
    """A date and time (the browser's datetime-local, or ISO 8601); without a zone, UTC."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"})
    default_error_messages = {
        "invalid": "Enter a real date and time, e.g. 2026-11-23T07:00 (ISO 8601).",
    }

    def __init__(self, **kwargs):
        super().__init__(required=False, **kwargs)


class CursorField(forms.CharField):
    """Where the next page starts: ``<id>`` or ``<iso time>|<id>`` (written by the pager)."""

    widget = forms.HiddenInput

    def __init__(self, **kwargs):
        super().__init__(required=False, max_length=100, **kwargs)

    def clean(self, value):
        value = super().clean(value)
        if not value:
            return None
        at, _, last_id = value.rpartition("|")
        valid_id = bool(last_id) and set(last_id) <= ASCII_DIGITS and int(last_id) <= ID_MAX
        try:
            valid_time = not at or parse_datetime(at) is not None
        except ValueError:
            valid_time = False
        if not (valid_id and valid_time):
            raise forms.ValidationError("This is not a page link the console wrote.", code="invalid")
        return value


def text_filter(label: str) -> forms.CharField:
    # CharField refuses NUL characters (PostgreSQL cannot compare text with them).
    return forms.CharField(label=label, required=False, max_length=TEXT_MAX_LENGTH)


def choice_filter(label: str, choices) -> forms.ChoiceField:
    return forms.ChoiceField(label=label, required=False, choices=[("", "any"), *choices])


class FilterForm(forms.Form):
    """A list's filters (bound to the query string) plus the page cursor."""

    before = CursorField(label="Page link")

    def __init__(self, params: Mapping | None = None):
        super().__init__(data=params if params is not None else {})

    @property
    def filter_names(self) -> list[str]:
        return [name for name in self.fields if name != "before"]

    def filters(self) -> dict:
        """The parsed values of the filters that were given (call after ``is_valid()``)."""
        return {
            name: self.cleaned_data[name]
            for name in self.filter_names
            if self.cleaned_data.get(name) not in (None, "")
        }

    def query(self) -> dict[str, str]:
        """The given filters as the operator wrote them: for page links and bulk jobs."""
        return {
            name: str(self.data[name]) for name in self.filter_names if self.data.get(name) not in (None, "")
        }

    def cursor(self) -> str | None:
        return self.cleaned_data.get("before") if self.is_valid() else None

    def error_lines(self) -> list[tuple[str, str]]:
        """(field, reason) lines: the label the operator sees and the query parameter's name."""
        return [
            (
                f"{self.fields[name].label} ({name})"
                if name in self.fields and self.fields[name].label
                else name,
                message,
            )
            for name, messages in self.errors.items()
            for message in messages
        ]

    def filters_or_refuse(self) -> dict:
        """The parsed filters, or an ApplicationError naming each bad field."""
        if not self.is_valid():
            described = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in self.errors.items())
            raise ApplicationError(
                f"The filter is not valid ({described}); nothing was done.",
                code="invalid",
                fields={name: list(messages) for name, messages in self.errors.items()},
            )
        return self.filters()


class PageForm(FilterForm):
    """A list without filters: only the page cursor."""


class DeadLetterFilterForm(FilterForm):
    status = choice_filter("Status", DeadLetter.Status.choices)
    error_class = text_filter("Error class")
    device = ReferenceField(label="Device (id or serial)", text_meaning="a serial number")
    queue = text_filter("Queue")
    since = InstantField(label="Failed from")
    until = InstantField(label="to")
    q = text_filter("Search body and error")
    fingerprint = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    field_order = ["status", "error_class", "device", "queue", "since", "until", "q", "fingerprint"]


class OverviewWindowForm(FilterForm):
    window = forms.ChoiceField(
        label="Rate window", required=False, choices=[("hour", "the last hour"), ("day", "the last 24 h")]
    )

    def window_name(self) -> str:
        return (self.cleaned_data.get("window") if self.is_valid() else None) or "hour"


# Each failure group's trend: (label, window, bucket).
FAILURE_TRENDS = {
    "24h": ("last 24 h, per hour", timedelta(hours=24), timedelta(hours=1)),
    "7d": ("last 7 days, per 6 h", timedelta(days=7), timedelta(hours=6)),
}


class FailureGroupFilterForm(FilterForm):
    status = choice_filter("Status", DeadLetter.Status.choices)
    trend = forms.ChoiceField(
        label="Trend over",
        required=False,
        choices=[(name, label) for name, (label, _, _) in FAILURE_TRENDS.items()],
    )

    def trend_name(self) -> str:
        return (self.cleaned_data.get("trend") if self.is_valid() else None) or "24h"

    def __init__(self, params: Mapping | None = None):
        params = dict((params or {}).items())
        params.setdefault("status", DeadLetter.Status.DEAD)  # what an operator acts on
        super().__init__(params)


# A chart's window: the last few hours or days up to now, or a custom range.
CHART_WINDOWS = {
    "6h": ("last 6 h", timedelta(hours=6)),
    "24h": ("last 24 h", timedelta(hours=24)),
    "7d": ("last 7 days", timedelta(days=7)),
    "30d": ("last 30 days", timedelta(days=30)),
}
CHART_DEFAULT_WINDOW = "24h"
# A longer range would still be bucketed into a few hundred points, but read every
# reading of the range: the bound keeps one request's work in proportion.
CHART_CUSTOM_MAX_SPAN = timedelta(days=400)


class ChartForm(FilterForm):
    """Which metric of a resident or device to chart, over which window.

    ``metrics`` are those the resident or device has readings of: any other is an error
    naming the field, and no metric given means the first of them.
    """

    metric = forms.ChoiceField(label="Metric", required=False)
    window = forms.ChoiceField(
        label="Window",
        required=False,
        choices=[*((name, label) for name, (label, _) in CHART_WINDOWS.items()), ("custom", "custom")],
    )
    since = InstantField(label="From")
    until = InstantField(label="to")

    def __init__(self, params: Mapping | None = None, *, metrics: list[str]):
        super().__init__(params)
        self.metrics = metrics
        self.fields["metric"].choices = [(metric, metric) for metric in metrics]

    def clean(self):
        cleaned = super().clean()
        window = cleaned.get("window") or CHART_DEFAULT_WINDOW
        since, until = cleaned.get("since"), cleaned.get("until")
        if window != "custom":
            if since or until:
                self.add_error("window", "From and to are read only with the custom window.")
            else:
                until = timezone.now()
                since = until - CHART_WINDOWS[window][1]
        elif not (since and until):
            for name in ("since", "until"):
                if not cleaned.get(name) and name not in self.errors:
                    self.add_error(name, "The custom window needs both ends.")
        elif until <= since:
            self.add_error("until", "The end must be after the start.")
        elif until - since > CHART_CUSTOM_MAX_SPAN:
            self.add_error("until", f"A window spans at most {CHART_CUSTOM_MAX_SPAN.days} days.")
        cleaned["window"] = window
        cleaned["since"], cleaned["until"] = since, until
        cleaned["metric"] = cleaned.get("metric") or (self.metrics[0] if self.metrics else None)
        return cleaned
