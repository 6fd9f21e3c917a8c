"""Whether this process can serve: the database and the broker answer (``/readyz``)."""

from __future__ import annotations

from django.db import DatabaseError, connection

from ingest.broker.monitoring import broker_reachable
from ingest.probe_cache import RecentResults

_DATABASE_CHECK = RecentResults[bool](seconds_setting="READINESS_CACHE_SECONDS")


def dependencies_unreachable() -> list[str]:
    """Names of the services this process cannot reach (empty when ready).

    The broker is judged by the same cached read as the overview's queue depths and
    /metrics (``ingest.broker.monitoring``): probes that come several times a second open
    at most one broker connection per BROKER_READ_CACHE_SECONDS among them all. The
    database check is reused for READINESS_CACHE_SECONDS.
    """
    unreachable = []
    if not _DATABASE_CHECK.get("database", _database_answers):
        unreachable.append("database")
    if not broker_reachable():
        unreachable.append("broker")
    return unreachable


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return False
    return True
