"""The console's filter vocabulary: every list filter, bulk selection and page cursor is parsed here.

Lists, bulk jobs created from "everything matching the filter" and page links all go
through these forms. A value that cannot be understood is a form error naming the field:
never a 500, and never silently dropped (a filter quietly ignored shows, or acts on, more
rows than the operator asked for).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from django import forms
from django.utils.dateparse import parse_datetime

from core.errors import ApplicationError
from dashboard.models import BulkSelection
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


class FailureGroupFilterForm(FilterForm):
    status = choice_filter("Status", DeadLetter.Status.choices)

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
        values = [value for value in params.getlist("ids") if value]
        if not all(set(value) <= ASCII_DIGITS and int(value) <= ID_MAX for value in values):
            raise ApplicationError("the selection holds something that is not a message id", code="invalid")
        ids = tuple(sorted({int(value) for value in values}))
        return BulkChoice(scope=scope, criteria=f"{len(ids)} selected on the list", ids=ids)
    if scope == BulkSelection.Scope.GROUP:
        fingerprint = params.get("fingerprint", "")
        if not (len(fingerprint) == FINGERPRINT_LENGTH and set(fingerprint) <= set("0123456789abcdef")):
            raise ApplicationError("this is not a failure group the console showed", code="invalid")
        return BulkChoice(scope=scope, criteria=f"group {fingerprint[:8]}", fingerprint=fingerprint)
    if scope == BulkSelection.Scope.FILTER:
        form = DeadLetterFilterForm(params)
        filters = form.filters_or_refuse()
        written = form.query()
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
