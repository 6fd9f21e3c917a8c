"""What every console page needs: its navigation, and the pipeline's health in one line."""

import logging

from django.db import DatabaseError
from django.utils.functional import SimpleLazyObject

from dashboard.records import RECORDS

logger = logging.getLogger(__name__)


def console(request):
    user = getattr(request, "user", None)
    return {
        "record_specs": RECORDS.values(),
        "can_operate": bool(user and user.is_authenticated and user.has_perm("ingest.requeue_deadletter")),
    }


def health(request):
    """The health banners for the compact line on every console page, read only if shown.

    The overview puts its own (full) list in its context, which takes precedence.
    """
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated and user.is_staff):
        return {}
    return {"health_banners": SimpleLazyObject(_health_banners_or_none)}


def _health_banners_or_none() -> list:
    from dashboard.selectors.health import health_banners

    try:
        return health_banners()
    except DatabaseError:
        # The page itself may be the one saying the database is gone (an error page):
        # the line is left out rather than failing that page too.
        logger.warning("health banners not shown: the database could not be read", exc_info=True)
        return []
