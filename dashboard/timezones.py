"""The console's one time policy: which zone a viewer reads and types times in.

The viewer picks browser time or UTC (console.js stores the choice as the IANA zone name
in a cookie). Every page renders times in that zone, and a filter value typed without an
offset is read in it, so what the operator types means what the page shows. A zone the
server does not know falls back to UTC, and the page says so.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from django.utils import timezone

ZONE_COOKIE = "console_tz"
# IANA names are ASCII letters, digits and "/_+-": anything else is refused before zoneinfo
# sees it (zoneinfo would otherwise try paths such as "../../etc").
ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}$")
ZONE_NAME_MAX_LENGTH = 64
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class ViewerZone:
    name: str
    zone: tzinfo
    # Why the asked-for zone was not used (shown on the page), or "".
    problem: str = ""

    @property
    def is_utc(self) -> bool:
        return self.name == "UTC"


UTC_ZONE = ViewerZone("UTC", UTC)


@dataclass(frozen=True)
class Recency:
    """A time where recency matters (last seen, last run): table cells show it as an age."""

    at: datetime | None


def viewer_zone_from_name(name: str | None) -> ViewerZone:
    """The zone a cookie names, or UTC with the reason when it names none the server knows."""
    if not name or name == "UTC":
        return UTC_ZONE
    if len(name) <= ZONE_NAME_MAX_LENGTH and ZONE_NAME.match(name):
        try:
            return ViewerZone(name, zoneinfo.ZoneInfo(name))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    shown = name[:ZONE_NAME_MAX_LENGTH]
    return ViewerZone("UTC", UTC, problem=f"Unknown time zone {shown!r}: times are shown and read in UTC.")


def format_instant(value: datetime, zone: tzinfo | None = None) -> str:
    """``2026-11-24 14:03:07 UTC``: the console's one way to write a time, with its zone."""
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(zone or timezone.get_current_timezone())
    return f"{local.strftime(TIME_FORMAT)} {local.tzname() or ''}".rstrip()


def describe_age(value: datetime, now: datetime | None = None) -> str:
    """``3 min ago`` / ``in 20 s``: written the same way by console.js as it keeps ages current."""
    now = now or timezone.now()
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    seconds = round((now - value).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    if seconds < 60:
        amount = f"{seconds} s"
    elif seconds < 3600:
        amount = f"{seconds // 60} min"
    elif seconds < 86400:
        amount = f"{seconds // 3600} h"
    else:
        amount = f"{seconds // 86400} d"
    return f"in {amount}" if future else f"{amount} ago"


class ViewerTimeZoneMiddleware:
    """Activates the viewer's zone for the request: templates render in it, forms read in it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        viewer_zone = viewer_zone_from_name(request.COOKIES.get(ZONE_COOKIE))
        request.viewer_zone = viewer_zone
        # Activated for this request only: the thread serves other requests (and the device API,
        # whose times must stay UTC) next.
        with timezone.override(viewer_zone.zone):
            response = self.get_response(request)
        if response.streaming and not response.is_async:
            # A stream (server-sent events, a download) is written after this returns.
            response.streaming_content = _chunks_in_zone(response.streaming_content, viewer_zone.zone)
        return response


def _chunks_in_zone(chunks: Iterable, zone: tzinfo) -> Iterator:
    iterator = iter(chunks)
    while True:
        with timezone.override(zone):
            try:
                chunk = next(iterator)
            except StopIteration:
                return
        yield chunk
