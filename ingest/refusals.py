"""A short trail of each device's refused API requests (401, 403, 429) for the console.

Refusals come at the rate a broken or hostile client chooses, so the trail is bounded by
construction: one Redis list per device, trimmed to ``REFUSALS_KEPT`` entries and expiring
``REFUSALS_TTL_SECONDS`` after the last refusal, written in one round trip. Only a
refusal that can be attributed to an existing device is kept (its key's prefix names it;
an unknown key names nobody and is only counted in the metrics), so the number of lists
is bounded by the devices table. The same refusal repeated (a device hammering past its
rate) is written once per ``REPEATS_COLLAPSED_SECONDS`` per web process, so a flood of
429s costs Redis little and does not push the other refusals out of the trail. Like the
rate limit, the trail fails open: without Redis nothing is recorded and the answer to the
device is unchanged.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

REFUSALS_KEPT = 50
REFUSALS_TTL_SECONDS = 7 * 24 * 3600
# After a failure Redis is left alone this long: a Redis that hangs would otherwise cost
# every refused request the cache timeout.
RETRY_AFTER_FAILURE_SECONDS = 5.0
_unreachable_until = 0.0
_last_failure_log = 0.0
REPEATS_COLLAPSED_SECONDS = 1.0
_MAX_REMEMBERED_REPEATS = 10_000
_last_written: dict[tuple, float] = {}


@dataclass(frozen=True)
class Refusal:
    at: datetime
    status: int
    code: str
    message: str
    key_prefix: str
    path: str


def _list_key(device_id: int) -> str:
    return f"refusals:device:{{{device_id}}}"


def device_refusal_record(
    *, device_id: int, status: int, code: str, message: str, key_prefix: str = "", path: str = ""
) -> None:
    """Append one refusal to the device's trail (the oldest beyond ``REFUSALS_KEPT`` go)."""
    if _is_repeat((device_id, status, code, key_prefix)):
        return
    entry = json.dumps(
        {
            "at": time.time(),
            "status": status,
            "code": code[:64],
            "message": message[:200],
            "key_prefix": key_prefix[:16],
            "path": path[:200],
        }
    )
    if time.monotonic() < _unreachable_until:
        return
    cache = caches["default"]
    try:
        if isinstance(cache, RedisCache):
            key = cache.make_key(_list_key(device_id))
            pipeline = cache._cache.get_client(key, write=True).pipeline(transaction=False)
            pipeline.lpush(key, entry).ltrim(key, 0, REFUSALS_KEPT - 1).expire(key, REFUSALS_TTL_SECONDS)
            pipeline.execute()
        else:  # development without Redis: racy, but bounded all the same
            entries = [entry, *cache.get(_list_key(device_id), [])][:REFUSALS_KEPT]
            cache.set(_list_key(device_id), entries, timeout=REFUSALS_TTL_SECONDS)
    except (RedisError, OSError) as error:
        _log_failure(error)


def _is_repeat(refusal: tuple) -> bool:
    now = time.monotonic()
    last = _last_written.get(refusal)
    if last is not None and now - last < REPEATS_COLLAPSED_SECONDS:
        return True
    if len(_last_written) >= _MAX_REMEMBERED_REPEATS:
        _last_written.clear()
    _last_written[refusal] = now
    return False


def api_refusal_record(*, exc: Exception, request, status: int, code: str, message: str) -> None:
    """Record a 401/403/429 of the device API on its device's trail, when one can be named.

    The device is the authenticated one (403 inactive, 429 over its rate) or the one a
    refused key's prefix names (401). Read from what authentication already set, so that
    recording never authenticates again.
    """
    from ingest.models import Device

    device_id = getattr(exc, "device_id", None)
    key_prefix = getattr(exc, "key_prefix", "")
    user = getattr(request, "_user", None)
    if device_id is None and isinstance(user, Device):
        device_id = user.pk
        key_prefix = getattr(getattr(request, "_auth", None), "prefix", "")
    if device_id is None:
        return
    device_refusal_record(
        device_id=device_id,
        status=status,
        code=code,
        message=message,
        key_prefix=key_prefix,
        path=getattr(request, "path", ""),
    )


def device_refusals(*, device_id: int) -> list[Refusal] | None:
    """The device's refused requests, newest first; None when the trail cannot be read."""
    cache = caches["default"]
    try:
        if isinstance(cache, RedisCache):
            key = cache.make_key(_list_key(device_id))
            raw = cache._cache.get_client(key).lrange(key, 0, REFUSALS_KEPT - 1)
        else:
            raw = cache.get(_list_key(device_id), [])
    except (RedisError, OSError) as error:
        _log_failure(error)
        return None
    refusals = []
    for item in raw:
        entry = json.loads(item)
        refusals.append(
            Refusal(
                at=datetime.fromtimestamp(entry["at"], tz=UTC),
                status=entry["status"],
                code=entry["code"],
                message=entry["message"],
                key_prefix=entry["key_prefix"],
                path=entry["path"],
            )
        )
    return refusals


def _log_failure(error: Exception) -> None:
    global _last_failure_log, _unreachable_until
    _unreachable_until = time.monotonic() + RETRY_AFTER_FAILURE_SECONDS
    # A refusal flood while Redis is away must not become a log flood.
    if time.monotonic() - _last_failure_log > 60:
        _last_failure_log = time.monotonic()
        logger.warning("device refusal trail unavailable (%s: %s)", type(error).__name__, error)
