"""What every console page needs for its navigation."""

from dashboard.records import RECORDS
from dashboard.selectors.alerts import alert_latest_id


def console(request):
    user = getattr(request, "user", None)
    return {
        "record_specs": RECORDS.values(),
        "can_operate": bool(user and user.is_authenticated and user.has_perm("ingest.requeue_deadletter")),
        # Called only where a page renders it (the live alert stream starts after it).
        "latest_alert_id": alert_latest_id,
    }
