"""What every console page needs: its navigation, and the pipeline's health in one line."""

import logging

from django.db import DatabaseError
from django.utils.functional import SimpleLazyObject

from dashboard.records import RECORDS
from dashboard.selectors.alerts import alert_latest_id
from dashboard.timezones import UTC_ZONE
from ingest.probe_cache import RecentResults

logger = logging.getLogger(__name__)


def console(request):
    user = getattr(request, "user", None)
    return {
        "record_specs": RECORDS.values(),
        # The zone this page's times are written in, and read in by its filters.
        "viewer_zone": getattr(request, "viewer_zone", UTC_ZONE),
        "can_operate": bool(user and user.is_authenticated and user.has_perm("ingest.requeue_deadletter")),
        # Called only where a page renders it (the live alert stream starts after it).
        "latest_alert_id": alert_latest_id,
    }


def health(request):
    """The health banners for the compact line on every console page, read only if shown.

    The overview puts its own (full) list in its context, which takes precedence.
    """
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated and user.is_staff):
        return {}
    return {"health_banners": SimpleLazyObject(_health_banners_or_none)}


# Reading the broker costs a connection and an HTTP call (100-200 ms): the compact line
# reuses one reading per process for CONSOLE_HEALTH_CACHE_SECONDS, so a page pays it at
# most that often. The overview reads afresh (its own cache: BROKER_READ_CACHE_SECONDS).
_STRIP_BANNERS = RecentResults[list](seconds_setting="CONSOLE_HEALTH_CACHE_SECONDS")


def _health_banners_or_none() -> list:
    from dashboard.selectors import health

    try:
        return _STRIP_BANNERS.get("banners", lambda: health.health_banners())
    except DatabaseError:
        # The page itself may be the one saying the database is gone (an error page):
        # the line is left out rather than failing that page too.
        logger.warning("health banners not shown: the database could not be read", exc_info=True)
        return []
