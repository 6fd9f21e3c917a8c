"""The console's filter vocabulary: every list filter, bulk selection and page cursor is parsed here.

Lists, bulk jobs created from "everything matching the filter" and page links all go
through these forms. A value that cannot be understood is a form error naming the field:
never a 500, and never silently dropped (a filter quietly ignored shows, or acts on, more
rows than the operator asked for). What a reference to a device or resident means, and
how it is applied to a query, is ``ingest.selectors.references``: these fields parse
with it, and every list applies it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django import forms
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.errors import ApplicationError
from dashboard.models import BulkSelection
from ingest.models import DeadLetter
from ingest.selectors.references import DEVICE_REFERENCE, RESIDENT_REFERENCE, Reference, record_id_parse

TEXT_MAX_LENGTH = 200


class ReferenceField(forms.CharField):
    """A record by its id (digits 0-9) or by text (a serial number, a name): int or str."""

    def __init__(self, *, reference: Reference, **kwargs):
        self.reference = reference
        super().__init__(required=False, max_length=TEXT_MAX_LENGTH, **kwargs)

    def clean(self, value):
        value = super().clean(value)
        if not value:
            return None
        try:
            return self.reference.parse(value)
        except ValueError as error:
            raise forms.ValidationError(str(error), code="invalid") from None


def device_field(label: str = "Device (id or serial)") -> ReferenceField:
    return ReferenceField(label=label, reference=DEVICE_REFERENCE)


def resident_field(label: str = "Resident") -> ReferenceField:
    return ReferenceField(label=label, reference=RESIDENT_REFERENCE)


def record_ids_parse(values: Iterable[str]) -> list[int]:
    """Ids ticked in a list (a bulk selection); an ApplicationError if one is not an id."""
    try:
        return [record_id_parse(value) for value in values if value]
    except ValueError:
        raise ApplicationError(
            "the selection holds something that is not a message id", code="invalid"
        ) from None


class InstantField(forms.DateTimeField):
    """A date and time (the browser's datetime-local, or ISO 8601).

    Without an offset it is read in the zone the page shows times in (the viewer's choice,
    activated by dashboard.timezones), so "since 09:00" means 09:00 as the operator sees it.
    """

    reads_viewer_zone = True

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"})
    default_error_messages = {
        "invalid": "Enter a real date and time, e.g. 2026-11-23T07:00 (ISO 8601).",
    }

    def __init__(self, **kwargs):
        super().__init__(required=False, **kwargs)


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: after the row with this id (and time, on a time-ordered list).

    Written into page links as ``<id>`` or ``<iso time>|<id>`` (``to_text``) and read back
    by ``CursorField`` (``from_text``): nowhere else.
    """

    last_id: int
    at: datetime | None = None

    @classmethod
    def from_text(cls, text: str) -> Cursor:
        """ValueError unless ``text`` is a cursor the pager wrote."""
        at_text, _, id_text = text.rpartition("|")
        last_id = record_id_parse(id_text)
        if not at_text:
            return cls(last_id)
        at = parse_datetime(at_text)  # ValueError for a well-formed date that does not exist
        if at is None:
            raise ValueError(f"{at_text!r} is not a time")
        return cls(last_id, timezone.make_aware(at) if timezone.is_naive(at) else at)

    def to_text(self) -> str:
        return f"{self.at.isoformat()}|{self.last_id}" if self.at else str(self.last_id)


class CursorField(forms.CharField):
    """Where the next page starts (a ``Cursor``, written by the pager)."""

    widget = forms.HiddenInput

    def __init__(self, **kwargs):
        super().__init__(required=False, max_length=100, **kwargs)

    def clean(self, value):
        value = super().clean(value)
        if not value:
            return None
        try:
            return Cursor.from_text(value)
        except ValueError:
            raise forms.ValidationError(
                "This is not a page link the console wrote.", code="invalid"
            ) from None


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

    def query_with_zones(self) -> dict[str, str]:
        """``query()`` with every time written with its offset: a selection stored for later is
        read the same way by whoever reads it, whatever zone that reader's page shows."""
        query = self.query()
        for name, form_field in self.fields.items():
            if isinstance(form_field, InstantField) and name in query and self.cleaned_data.get(name):
                query[name] = self.cleaned_data[name].isoformat()
        return query

    def cursor(self) -> Cursor | None:
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
    device = device_field()
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


FINGERPRINT_LENGTH = 64


@dataclass(frozen=True)
class BulkChoice:
    """Which dead letters a bulk action is planned over, parsed and validated.

    ``scope`` is a ``BulkSelection.Scope`` value; ``ids`` (selected), ``fingerprint``
    (group) or ``filters`` (parsed values of ``DeadLetterFilterForm``) says which;
    ``criteria`` says it in words. A plan turns it into a frozen set of ids.
    """

    scope: str
    criteria: str
    ids: tuple[int, ...] = ()
    fingerprint: str = ""
    filters: Mapping = field(default_factory=dict)


def bulk_choice_parse(params: Mapping) -> BulkChoice:
    """The bulk form's scope and its values, or an ApplicationError saying what is wrong.

    Never "everything" by default: an unknown scope, or a filter that does not parse,
    acts on nothing.
    """
    scope = params.get("scope")
    if scope == BulkSelection.Scope.SELECTED:
        ids = tuple(sorted(set(record_ids_parse(params.getlist("ids")))))
        return BulkChoice(scope=scope, criteria=f"{len(ids)} selected on the list", ids=ids)
    if scope == BulkSelection.Scope.GROUP:
        fingerprint = params.get("fingerprint", "")
        if not (len(fingerprint) == FINGERPRINT_LENGTH and set(fingerprint) <= set("0123456789abcdef")):
            raise ApplicationError("this is not a failure group the console showed", code="invalid")
        return BulkChoice(scope=scope, criteria=f"group {fingerprint[:8]}", fingerprint=fingerprint)
    if scope == BulkSelection.Scope.FILTER:
        form = DeadLetterFilterForm(params)
        filters = form.filters_or_refuse()
        # Times with their offset: the criteria read the same in whatever zone a page shows.
        written = form.query_with_zones()
        criteria = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in written.items())
        return BulkChoice(scope=scope, criteria=f"matching {criteria or 'everything'}", filters=filters)
    raise ApplicationError(f"unknown scope {scope!r}: choose selected, filter or group", code="invalid")


class AuditFilterForm(FilterForm):
    """The audit trail's filters: who, what, which object, and when."""

    who = text_filter("Who")
    what = text_filter("What")
    object = text_filter("Which object")
    since = InstantField(label="From")
    until = InstantField(label="to")

    field_order = ["who", "what", "object", "since", "until"]


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
