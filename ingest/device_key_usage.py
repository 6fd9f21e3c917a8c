"""When each device key was last used, written cheaply from the accept path.

The accept path answers from memory (ingest/device_key_cache.py); a write per request
would undo that. Each web process remembers when it last stamped each key and stamps it
again only after ``STAMP_INTERVAL_SECONDS``: one single-row UPDATE by primary key, per
key and process, at most once a minute. The column therefore reads "used within the
minute before this time". A failed stamp never fails the request: the stamp is a hint
for the console, the readings are what matter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.db import DatabaseError
from django.utils import timezone

from ingest.models import DeviceAPIKey

logger = logging.getLogger(__name__)

STAMP_INTERVAL_SECONDS = 60.0
# Keys remembered per process; beyond it the oldest stamps are forgotten (and simply
# written again next time), so a process never holds more than this.
MAX_REMEMBERED_KEYS = 10_000


class DeviceKeyUsage:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._stamped_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._stamped_at.clear()

    def key_used(self, api_key: DeviceAPIKey) -> None:
        """Note that ``api_key`` authenticated a request (a write at most once a minute)."""
        now = self.clock()
        with self._lock:
            last = self._stamped_at.get(api_key.pk)
            if last is not None and now - last < STAMP_INTERVAL_SECONDS:
                return
            if len(self._stamped_at) >= MAX_REMEMBERED_KEYS:
                self._stamped_at.clear()
            self._stamped_at[api_key.pk] = now
        try:
            DeviceAPIKey.objects.filter(pk=api_key.pk).update(last_used_at=timezone.now())
        except DatabaseError as error:
            logger.warning("could not record the use of key %s: %s", api_key.prefix, error)


device_key_usage = DeviceKeyUsage()
