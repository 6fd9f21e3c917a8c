"""One leading scheduler: a PostgreSQL session-level advisory lock held on its own connection.

Whoever holds the lock runs the jobs. If that process dies, PostgreSQL ends its session
and releases the lock, and a standby takes it on its next try. The connection is not
Django's (which jobs close and reopen), so the lock lives exactly as long as the leader.
"""

from __future__ import annotations

import logging

import psycopg
from django.db import connection

logger = logging.getLogger(__name__)

# An arbitrary, fixed 64-bit key: "the iot_care scheduler" in this database.
SCHEDULER_LOCK_KEY = 7_310_444_001


class LeaderLock:
    def __init__(self, key: int = SCHEDULER_LOCK_KEY) -> None:
        self.key = key
        self._connection: psycopg.Connection | None = None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits."""
        try:
            if self._connection is None or self._connection.closed:
                params = connection.get_connection_params()
                params.pop("cursor_factory", None)
                params.pop("context", None)
                # Keepalives both ways: if the leader's machine vanishes, the server ends the
                # session (and frees the lock) in about 25 s, not after the OS's 2 hours.
                self._connection = psycopg.connect(
                    **params,
                    autocommit=True,
                    application_name="iot_care scheduler",
                    keepalives=1,
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=3,
                    options="-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3",
                )
            acquired = self._connection.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()[0]
        except psycopg.Error as error:
            logger.warning("cannot reach the database to take the scheduler lock: %s", error)
            self.release()
            return False
        return bool(acquired)

    def still_held(self) -> bool:
        """False once the lock's connection is gone (then another scheduler may lead)."""
        if self._connection is None or self._connection.closed:
            return False
        try:
            held = self._connection.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                "AND granted AND ((classid::bigint << 32) | objid::bigint) = %s",
                [self.key],
            ).fetchone()[0]
        except psycopg.Error:
            return False
        return held > 0

    def release(self) -> None:
        if self._connection is not None and not self._connection.closed:
            try:
                self._connection.execute("SELECT pg_advisory_unlock(%s)", [self.key])
            except psycopg.Error:
                pass  # closing the session below releases it anyway
            self._connection.close()
        self._connection = None
