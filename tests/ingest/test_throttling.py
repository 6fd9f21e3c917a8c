"""The per-device rate holds across every web worker (Redis), and a Redis outage fails open."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from ingest.services.devices import device_key_issue
from tests.broker import queue_depth
from tests.factories import DeviceFactory
from tests.web import free_port, gunicorn_server, http_request
from tests.workers import PROJECT_ROOT


def _reading_body() -> str:
    measured_at = (timezone.now() - timedelta(seconds=5)).isoformat()
    return json.dumps({"readings": [{"metric": "heart_rate", "value": 70, "measured_at": measured_at}]})


@pytest.mark.usefixtures("committed_db")
def test_the_device_rate_holds_across_four_gunicorn_workers(ingest_queue):
    _, key = device_key_issue(device=DeviceFactory())
    headers = {"Content-Type": "application/json", "Authorization": f"Api-Key {key}"}
    with gunicorn_server(
        ingest_queue,
        workers=4,
        TEST_INGEST_DEVICE_RATE="10/minute",
        TEST_CACHE_KEY_PREFIX=f"{settings.CACHES['default'].get('KEY_PREFIX', 'test')}-{uuid.uuid4().hex[:8]}",
    ) as port:
        # Eight clients at once, so that every worker serves some of the 60 requests.
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(
                pool.map(
                    lambda _: http_request(port, "POST", "/api/v1/ingest/", _reading_body(), headers),
                    range(60),
                )
            )

    statuses = [status for status, _, _ in answers]
    assert statuses.count(202) == 10, statuses
    assert statuses.count(429) == 50, statuses
    for status, response_headers, body in answers:
        if status == 429:
            assert 1 <= int(response_headers["retry-after"]) <= 60
            assert json.loads(body)["code"] == "throttled"
    assert queue_depth(ingest_queue.queue) == 10


def _unavailable_count() -> float:
    return REGISTRY.get_sample_value("iot_care_rate_limit_unavailable_total") or 0.0


@pytest.mark.django_db
def test_an_unreachable_redis_lets_devices_through_and_says_so(settings, ingest_queue, caplog, monkeypatch):
    """Fail open: the limit guards against one runaway device; a Redis outage must not stop care data."""
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    settings.INGEST_DEVICE_RATE = "1/minute"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    before = _unavailable_count()
    monkeypatch.setattr("ingest.throttling._last_unavailable_log", 0.0, raising=False)
    monkeypatch.setattr("ingest.throttling._cache_unreachable_until", 0.0, raising=False)

    with caplog.at_level(logging.ERROR, logger="ingest.throttling"):
        statuses = [
            client.post("/api/v1/ingest/", data=_reading_body(), content_type="application/json").status_code
            for _ in range(3)
        ]

    assert statuses == [202, 202, 202]
    assert _unavailable_count() - before == 3
    assert [record.message for record in caplog.records if "rate limit not enforced" in record.message]
    assert queue_depth(ingest_queue.queue) == 3


@pytest.mark.django_db
def test_a_hanging_redis_is_asked_once_then_left_alone_for_a_while(settings, ingest_queue, monkeypatch):
    """A Redis that accepts connections and never answers costs one timeout, not one per request."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []

    def accept_and_say_nothing():
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    monkeypatch.setattr("ingest.throttling._cache_unreachable_until", 0.0, raising=False)
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{listener.getsockname()[1]}/0",
            "OPTIONS": {"socket_connect_timeout": 0.3, "socket_timeout": 0.3},
        }
    }
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    try:
        statuses = [
            client.post("/api/v1/ingest/", data=_reading_body(), content_type="application/json").status_code
            for _ in range(5)
        ]
    finally:
        listener.close()
        for connection in accepted:
            connection.close()

    assert statuses == [202] * 5
    assert len(accepted) == 1


def test_the_sliding_log_refuses_past_the_rate_and_counts_only_admitted_requests(settings):
    from ingest.throttling import Rate, device_rate_check

    device_id = 10_000_000 + os.getpid()
    rate = Rate(limit=3, period_seconds=60)
    decisions = [device_rate_check(device_id=device_id, rate=rate) for _ in range(6)]

    assert [decision.allowed for decision in decisions] == [True, True, True, False, False, False]
    assert all(55 < decision.retry_after_seconds <= 60 for decision in decisions[3:])
    # Refused requests are not counted: a wider rate admits exactly the difference.
    more = [device_rate_check(device_id=device_id, rate=Rate(limit=5, period_seconds=60)) for _ in range(4)]
    assert [decision.allowed for decision in more] == [True, True, False, False]


def test_requests_counted_together_are_admitted_while_under_the_rate(settings):
    from ingest.throttling import Rate, device_rate_check

    device_id = 20_000_000 + os.getpid()
    rate = Rate(limit=10, period_seconds=60)
    together = device_rate_check(device_id=device_id, rate=rate, requests=6)
    rest = device_rate_check(device_id=device_id, rate=rate, requests=4)

    assert (together.allowed, together.admitted, together.requested) == (True, 6, 6)
    assert (rest.allowed, rest.admitted) == (True, 4)
    # Each one was counted: the log is full now.
    assert not device_rate_check(device_id=device_id, rate=rate).allowed


def test_requests_counted_together_past_the_rate_admit_only_the_first_ones(settings):
    from ingest.throttling import Rate, device_rate_check

    device_id = 30_000_000 + os.getpid()
    rate = Rate(limit=5, period_seconds=60)
    first = device_rate_check(device_id=device_id, rate=rate, requests=3)
    over = device_rate_check(device_id=device_id, rate=rate, requests=4)
    none_left = device_rate_check(device_id=device_id, rate=rate, requests=2)

    assert first.admitted == 3
    assert (over.allowed, over.admitted, over.requested) == (False, 2, 4)
    assert 55 < over.retry_after_seconds <= 60
    assert (none_left.allowed, none_left.admitted) == (False, 0)
    # The refused ones were not counted: a wider rate admits exactly the difference.
    wider = device_rate_check(device_id=device_id, rate=Rate(limit=8, period_seconds=60), requests=5)
    assert wider.admitted == 3


@pytest.mark.parametrize("rate", ["ten/minute", "10/fortnight", "10"])
def test_a_malformed_rate_is_a_configuration_error(rate):
    from django.core.exceptions import ImproperlyConfigured

    from ingest.throttling import Rate

    with pytest.raises(ImproperlyConfigured, match="INGEST_DEVICE_RATE"):
        Rate.parse(rate)


def _prod_settings_import(**overrides: str) -> subprocess.CompletedProcess:
    environment = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "config.settings.prod",
        "DJANGO_SECRET_KEY": "x" * 60,
        "DATABASE_URL": "postgres://u:p@127.0.0.1:5432/d",
        "RABBITMQ_PASSWORD": "p",
        "DJANGO_ALLOWED_HOSTS": "example.org",
        **overrides,
    }
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("cache_url", ["locmemcache://", "dummycache://", "filecache:///tmp/cache"])
def test_production_refuses_a_cache_that_is_not_redis(cache_url):
    result = _prod_settings_import(CACHE_URL=cache_url)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "CACHE_URL" in result.stderr


def test_production_requires_a_cache_url_and_starts_with_redis():
    missing = _prod_settings_import()
    assert missing.returncode != 0 and "CACHE_URL" in missing.stderr
    assert _prod_settings_import(CACHE_URL="redis://127.0.0.1:6379/0").stdout.strip() == "started"


def test_without_redis_a_development_cache_counts_per_period(settings):
    from ingest.throttling import Rate, device_rate_check

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    rate = Rate(limit=2, period_seconds=3600)
    decisions = [device_rate_check(device_id=42, rate=rate) for _ in range(4)]

    assert [decision.allowed for decision in decisions] == [True, True, False, False]
    assert 0 < decisions[2].retry_after_seconds <= 3600
    together = device_rate_check(device_id=43, rate=rate, requests=3)
    assert (together.allowed, together.admitted) == (False, 2)
    assert 0 < together.retry_after_seconds <= 3600
