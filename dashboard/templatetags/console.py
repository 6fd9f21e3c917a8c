"""Template filters that write every time on the console the same way.

``{{ value|console_time }}`` writes ``2026-11-24 14:03:07 CET`` in the viewer's zone inside
``<time datetime="...">`` (console.js rewrites it when the viewer switches zones);
``{{ value|console_age }}`` writes ``3 min ago``, kept current by console.js, with the
full time as its tooltip. Templates never format a time themselves (no ``|date``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from django import template
from django.template.defaultfilters import truncatechars
from django.utils import timezone
from django.utils.html import format_html

from dashboard.timezones import Recency, describe_age, format_instant

register = template.Library()
EMPTY = "–"
CELL_MAX_CHARS = 80


def _iso(value: datetime) -> str:
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@register.filter
def console_time(value, empty: str = EMPTY):
    if not isinstance(value, datetime):
        return empty if value in (None, "") else value
    return format_html('<time datetime="{}" data-console-time>{}</time>', _iso(value), format_instant(value))


@register.filter
def console_age(value, empty: str = EMPTY):
    if not isinstance(value, datetime):
        return empty if value in (None, "") else value
    return format_html(
        '<time datetime="{}" data-console-age title="{}">{}</time>',
        _iso(value),
        format_instant(value),
        describe_age(value),
    )


@register.filter
def console_cell(value):
    """A table cell of any type: times in the console's format, nothing as a dash, long text cut."""
    if isinstance(value, Recency):
        return console_age(value.at)
    if isinstance(value, datetime):
        return console_time(value)
    if value is None or value == "":
        return EMPTY
    return truncatechars(value, CELL_MAX_CHARS)
