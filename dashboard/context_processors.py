"""What every console page needs for its navigation."""

from dashboard.records import RECORDS
from dashboard.timezones import UTC_ZONE


def console(request):
    user = getattr(request, "user", None)
    return {
        "record_specs": RECORDS.values(),
        # The zone this page's times are written in, and read in by its filters.
        "viewer_zone": getattr(request, "viewer_zone", UTC_ZONE),
        "can_operate": bool(user and user.is_authenticated and user.has_perm("ingest.requeue_deadletter")),
    }
