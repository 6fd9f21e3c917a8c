"""Per-device request rate (429 with Retry-After above ``INGEST_DEVICE_RATE``).

The count lives in the shared cache (Redis), so the limit holds across every gunicorn
worker and web host. Each request costs one round trip (a gRPC stream's chunks that
arrived together share one): a Lua script keeps the times of the device's accepted
requests in the last period (a sliding log, exact at every instant) and admits a request
only if fewer than the rate are there. Refused requests are not
counted: a device over its rate still gets exactly the rate through.

When the cache cannot be reached the throttle lets the request through (fail open),
logs it and counts it in ``iot_care_rate_limit_unavailable_total``: the limit protects
the pipeline from one runaway device, and the broker's queue bound still protects it
while Redis is down; refusing every device's readings (SOS alerts included) because the
limiter's store is away would turn a Redis outage into a care outage.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured
from redis.commands.core import Script
from redis.exceptions import RedisError
from rest_framework.throttling import BaseThrottle

from ingest.models import Device

logger = logging.getLogger(__name__)

_PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# KEYS[1]: the device's log. ARGV: period in seconds, limit, a unique member, the number of
# requests counted together (one HTTP request; a gRPC stream's chunks that arrived together).
# Returns {requests admitted, ""} when all were, else {admitted, seconds until the oldest
# entry leaves the period}: the first ones are admitted, as if they had come one by one.
# The server's clock is used so that web hosts with skewed clocks share one timeline.
# Bytes: with no client to ask for an encoding, Script hashes them as they are.
_SLIDING_LOG = Script(
    None,
    b"""
local period = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local requests = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
local admitted = math.max(0, math.min(requests, limit - redis.call('ZCARD', KEYS[1])))
for number = 1, admitted do
    redis.call('ZADD', KEYS[1], now, ARGV[3] .. ':' .. number)
end
if admitted > 0 then
    redis.call('EXPIRE', KEYS[1], math.ceil(period))
end
if admitted == requests then
    return {admitted, ''}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {admitted, tostring(tonumber(oldest[2]) + period - now)}
""",
)


@dataclass(frozen=True)
class Rate:
    limit: int
    period_seconds: int

    @classmethod
    def parse(cls, rate: str) -> Rate:
        """DRF's syntax: ``<n>/<second|minute|hour|day>`` (only the unit's first letter counts)."""
        count, _, unit = rate.partition("/")
        try:
            return cls(int(count), _PERIOD_SECONDS[unit.strip()[:1]])
        except (ValueError, KeyError):
            raise ImproperlyConfigured(
                f"INGEST_DEVICE_RATE={rate!r}: expected <n>/<second|minute|hour|day>"
            ) from None


@dataclass(frozen=True)
class RateDecision:
    """Of ``requested`` requests counted together, the first ``admitted`` were let through."""

    admitted: int
    requested: int = 1
    retry_after_seconds: float = 0.0

    @property
    def allowed(self) -> bool:
        return self.admitted == self.requested


def _redis_client(cache: RedisCache, key: str) -> Any:
    """The redis-py client for writes, kept on the cache's backend object.

    Django's RedisCache builds a new client object (about 0.3 ms of CPU) on every
    get_client(); writes always go to the first server, so one client serves them all.
    """
    backend = cache._cache
    client = getattr(backend, "_rate_limit_client", None)
    if client is None:
        client = backend._rate_limit_client = backend.get_client(key, write=True)
    return client


def device_rate_check(*, device_id: int, rate: Rate, requests: int = 1) -> RateDecision:
    """Count ``requests`` requests of the device against its rate, in one round trip to the shared cache."""
    cache = caches["default"]
    # The braces make a Redis Cluster hash tag: one device's keys stay on one node.
    key = f"rate:device:{{{device_id}}}"
    if isinstance(cache, RedisCache):
        # Django's Redis backend has no scripting API; its client is the pool's redis-py client.
        key = cache.make_key(key)  # the cache's KEY_PREFIX, as its own methods would add
        client = _redis_client(cache, key)
        admitted, wait = _SLIDING_LOG(
            keys=[key], args=[rate.period_seconds, rate.limit, uuid.uuid4().hex, requests], client=client
        )
        return RateDecision(int(admitted), requests, float(wait or 0))
    return _fixed_window_check(cache=cache, key=key, rate=rate, requests=requests)


def _fixed_window_check(*, cache, key: str, rate: Rate, requests: int) -> RateDecision:
    """Any other Django cache (development without Redis): a counter per period."""
    now = time.time()
    window_start = math.floor(now / rate.period_seconds) * rate.period_seconds
    window_key = f"{key}:{window_start}"
    cache.add(window_key, 0, timeout=rate.period_seconds + 1)
    admitted = max(0, min(requests, rate.limit - cache.get(window_key, 0)))
    if admitted:
        cache.incr(window_key, admitted)
    wait = window_start + rate.period_seconds - now if admitted < requests else 0.0
    return RateDecision(admitted, requests, wait)


def device_requests_admit(*, device: Device, requests: int = 1) -> RateDecision:
    """Count the device's requests against INGEST_DEVICE_RATE; all admitted if the cache is unreachable."""
    rate = Rate.parse(settings.INGEST_DEVICE_RATE)
    if time.monotonic() < _cache_unreachable_until:
        _rate_limit_unavailable(None, requests)
        return RateDecision(requests, requests)
    try:
        return device_rate_check(device_id=device.pk, rate=rate, requests=requests)
    except (RedisError, OSError) as error:
        _rate_limit_unavailable(error, requests)
        return RateDecision(requests, requests)


class DeviceRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        device = request.user
        if not isinstance(device, Device):
            return True
        decision = device_requests_admit(device=device)
        self._wait = decision.retry_after_seconds
        return decision.allowed

    def wait(self) -> float | None:
        return max(1.0, getattr(self, "_wait", 1.0))


# After a failure the cache is left alone this long: a Redis that hangs would otherwise
# cost every request the cache timeout.
CACHE_RETRY_AFTER_FAILURE_SECONDS = 5.0
_cache_unreachable_until = 0.0
_last_unavailable_log = 0.0


def _rate_limit_unavailable(error: Exception | None, requests: int) -> None:
    """Count requests let through unthrottled; on a fresh failure, back off and log."""
    from ingest.metrics import RATE_LIMIT_UNAVAILABLE

    global _cache_unreachable_until, _last_unavailable_log
    RATE_LIMIT_UNAVAILABLE.inc(requests)
    if error is None:
        return
    _cache_unreachable_until = time.monotonic() + CACHE_RETRY_AFTER_FAILURE_SECONDS
    # One line a minute per process is enough to page someone; one per request floods.
    if time.monotonic() - _last_unavailable_log > 60:
        _last_unavailable_log = time.monotonic()
        logger.error(
            "rate limit not enforced: the cache is unreachable (%s: %s)", type(error).__name__, error
        )
