"""Verified device keys, kept per process so that a request costs no database query.

The first request with a key pays for the lookup (one query, the SHA-512 check). After
that the key is served from memory, and every cached key is re-checked in ONE query at
most once per DEVICE_KEY_CACHE_SECONDS (1 by default): a key revoked, expired or deleted,
or a device no longer ``active`` — also when changed by SQL in the customer's ``devices``
table — is dropped from the cache, so each web process refuses it within that bound plus
one query. If that query fails the request fails (503): a key is never trusted longer
than the bound. At most DEVICE_KEY_CACHE_MAX_KEYS keys are kept (least recently used go
first). 0 seconds turns the cache off (every request looks its key up).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.utils import timezone

from ingest.models import Device, DeviceAPIKey, DeviceStatus


class DeviceKeyCache:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._keys: OrderedDict[bytes, DeviceAPIKey] = OrderedDict()
        self._lock = threading.Lock()
        self._revalidating = threading.Lock()
        self._validated_at = float("-inf")

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
            self._validated_at = float("-inf")

    def key_of(self, key: str) -> DeviceAPIKey | None:
        """The usable key (with its device) for ``key``, or None for an unknown or revoked key.

        An expired key, or one of a device that is not active, is returned as it is (the
        caller refuses it with its own message) but never cached.
        """
        seconds = settings.DEVICE_KEY_CACHE_SECONDS
        if seconds <= 0:
            return _key_lookup(key)
        self._revalidate_if_due(seconds)
        # A digest, not the key, indexes the cache: no plain key stays in memory.
        digest = hashlib.sha256(key.encode()).digest()
        with self._lock:
            api_key = self._keys.get(digest)
            if api_key is not None:
                self._keys.move_to_end(digest)
        if api_key is not None and not api_key.has_expired:
            return api_key
        api_key = _key_lookup(key)
        if api_key is not None and _cacheable(api_key):
            with self._lock:
                self._keys[digest] = api_key
                while len(self._keys) > settings.DEVICE_KEY_CACHE_MAX_KEYS:
                    self._keys.popitem(last=False)
        return api_key

    def _revalidate_if_due(self, seconds: float) -> None:
        if self.clock() - self._validated_at < seconds:
            return
        with self._revalidating:
            if self.clock() - self._validated_at < seconds:
                return  # another thread did it while this one waited
            started = self.clock()
            with self._lock:
                cached = {api_key.pk: digest for digest, api_key in self._keys.items()}
            unusable = _keys_no_longer_usable(list(cached)) if cached else []
            with self._lock:
                for key_id in unusable:
                    self._keys.pop(cached[key_id], None)
            # From when the query started: what it read is at least that fresh.
            self._validated_at = started


def _key_lookup(key: str) -> DeviceAPIKey | None:
    try:
        return DeviceAPIKey.objects.get_from_key(key)
    except DeviceAPIKey.DoesNotExist:
        return None


def _cacheable(api_key: DeviceAPIKey) -> bool:
    return not api_key.has_expired and api_key.device.status == DeviceStatus.ACTIVE


def _keys_no_longer_usable(key_ids: list[str]) -> list[str]:
    """Of ``key_ids``, those deleted, revoked, expired, or whose device is not active: one query."""
    keys = DeviceAPIKey._meta.db_table
    devices = Device._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT cached.id FROM unnest(%s::text[]) AS cached(id)
            WHERE NOT EXISTS (
                SELECT 1 FROM {keys} AS k JOIN {devices} AS d ON d.id = k.device_id
                WHERE k.id = cached.id AND NOT k.revoked
                  AND (k.expiry_date IS NULL OR k.expiry_date > %s) AND d.status = %s
            )
            """,
            [key_ids, timezone.now(), DeviceStatus.ACTIVE],
        )
        return [row[0] for row in cursor.fetchall()]


device_key_cache = DeviceKeyCache()
