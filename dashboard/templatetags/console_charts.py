"""``{% reading_chart resident %}`` / ``{% reading_chart device %}``: the readings chart, anywhere."""

from __future__ import annotations

from django import template
from django.urls import reverse

from dashboard.filters import CHART_DEFAULT_WINDOW, CHART_WINDOWS
from ingest.models import Resident

register = template.Library()


@register.inclusion_tag("dashboard/_chart.html")
def reading_chart(subject, query: str = "", sync_location: bool = False) -> dict:
    """The chart of a resident's (all their devices') or a device's readings.

    It loads its data itself, starting from ``query`` (``metric=...&window=...``); with
    ``sync_location`` the page's address follows the metric and window picked.
    """
    kind = "resident" if isinstance(subject, Resident) else "device"
    return {
        "chart_data_url": reverse(f"dashboard:chart-{kind}-data", args=[subject.pk]),
        "chart_query": query,
        "chart_sync_location": sync_location,
        "chart_windows": [(name, label) for name, (label, _) in CHART_WINDOWS.items()],
        "chart_default_window": CHART_DEFAULT_WINDOW,
    }
