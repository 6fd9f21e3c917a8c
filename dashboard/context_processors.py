"""What every console page needs for its navigation."""

from dashboard.records import RECORDS


def console(request):
    user = getattr(request, "user", None)
    return {
        "record_specs": RECORDS.values(),
        "can_operate": bool(user and user.is_authenticated and user.has_perm("ingest.requeue_deadletter")),
    }
