"""Alert rules writing to the customer's ``alerts`` table: silent devices, inactive residents.

Each rule opens at most one alert per device (or resident) while one is open: the
"no open alert yet" condition is part of the same INSERT ... SELECT. Only the leading
scheduler runs these (one job, max one instance), so two inserts never race.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection, transaction

DEVICE_OFFLINE = "device_offline"
INACTIVITY = "inactivity"
ACTIVITY_DEVICE_TYPES = ["motion", "door"]


@transaction.atomic
def device_offline_alerts_raise(*, now: datetime, silent_after: timedelta) -> int:
    """One ``device_offline`` alert per silence of an active device longer than ``silent_after``.

    A device that never reported counts from its installation (or creation). After the
    alert is acknowledged, the next one comes only once the device has reported again and
    gone silent again.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO alerts (resident_id, device_id, alert_type, message)
            SELECT d.resident_id, d.id, %(type)s,
                   'Device ' || d.serial_no || ' (' || d.device_type || ') silent since '
                   || to_char(coalesce(d.last_seen_at, d.installed_at, d.created_at) AT TIME ZONE 'UTC',
                              'YYYY-MM-DD HH24:MI') || ' UTC'
            FROM devices d
            WHERE d.status = 'active'
              AND coalesce(d.last_seen_at, d.installed_at, d.created_at) < %(cutoff)s
              -- one alert per silence: none while one is open, and none again after a
              -- carer acknowledged it, until the device has been heard from since
              AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.device_id = d.id AND a.alert_type = %(type)s
                              AND (a.status = 'open'
                                   OR a.created_at >= coalesce(d.last_seen_at, d.installed_at, d.created_at)))
            """,
            {"type": DEVICE_OFFLINE, "cutoff": now - silent_after},
        )
        return cursor.rowcount


@transaction.atomic
def inactivity_alerts_raise(*, now: datetime, quiet_for: timedelta) -> int:
    """One open ``inactivity`` alert per active resident whose motion/door sensors saw nothing.

    Only sensors that are active and were installed before the window count, so a new
    installation does not raise an alert at once.
    """
    cutoff = now - quiet_for
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO alerts (resident_id, alert_type, message)
            SELECT r.id, %(type)s,
                   'No motion or door activity for ' || r.full_name || ' since '
                   || to_char(%(cutoff)s AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC'
            FROM residents r
            WHERE r.is_active
              AND EXISTS (SELECT 1 FROM devices d WHERE d.resident_id = r.id AND d.status = 'active'
                          AND d.device_type = ANY(%(types)s)
                          AND coalesce(d.installed_at, d.created_at) <= %(cutoff)s)
              AND NOT EXISTS (SELECT 1 FROM device_events e JOIN devices d ON d.id = e.device_id
                              WHERE d.resident_id = r.id AND d.device_type = ANY(%(types)s)
                              AND e.occurred_at >= %(cutoff)s)
              -- none while one is open, nor within one window of the last one
              AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.resident_id = r.id AND a.alert_type = %(type)s
                              AND (a.status = 'open' OR a.created_at >= %(cutoff)s))
            """,
            {"type": INACTIVITY, "cutoff": cutoff, "types": ACTIVITY_DEVICE_TYPES},
        )
        return cursor.rowcount
