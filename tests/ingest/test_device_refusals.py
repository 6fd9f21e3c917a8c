"""A device's refused requests (401/403/429) are kept, bounded; its keys' last use is stamped."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from ingest import refusals
from ingest.device_key_cache import device_key_cache
from ingest.device_key_usage import STAMP_INTERVAL_SECONDS, DeviceKeyUsage, device_key_usage
from ingest.models import DeviceAPIKey, DeviceStatus
from ingest.refusals import REFUSALS_KEPT, device_refusals
from ingest.services.devices import device_key_issue, device_keys_revoke
from tests.factories import DeviceFactory

URL = "/api/v1/ingest/"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_caches():
    refusals._last_written.clear()
    device_key_cache.clear()
    device_key_usage.clear()
    yield
    device_key_cache.clear()
    device_key_usage.clear()


def _post(key: str, body=None):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    reading = {"metric": "heart_rate", "value": 70, "unit": "bpm", "measured_at": timezone.now().isoformat()}
    return client.post(URL, data=json.dumps(body or {"readings": [reading]}), content_type="application/json")


def test_a_revoked_key_is_refused_and_the_refusal_names_its_device_and_prefix(device, device_key):
    device_keys_revoke(device=device)

    assert _post(device_key).status_code == 401

    [refusal] = device_refusals(device_id=device.pk)
    assert (refusal.status, refusal.code) == (401, "authentication_failed")
    assert refusal.key_prefix == device_key.partition(".")[0]
    assert refusal.path == URL


def test_a_wrong_secret_for_a_known_prefix_is_kept_as_that_keys_refusal(device, device_key):
    prefix = device_key.partition(".")[0]
    assert _post(f"{prefix}.not-the-secret").status_code == 401
    assert [r.key_prefix for r in device_refusals(device_id=device.pk)] == [prefix]


def test_an_unknown_key_names_no_device_and_is_kept_nowhere(device, device_key):
    assert _post("nobody00.secret").status_code == 401
    assert _post("x" * 500).status_code == 401
    assert device_refusals(device_id=device.pk) == []


def test_an_inactive_device_gets_403_and_it_is_on_its_trail(device, device_key, ingest_queue):
    device.status = DeviceStatus.INACTIVE
    device.save()
    assert _post(device_key).status_code == 403
    [refusal] = device_refusals(device_id=device.pk)
    assert refusal.status == 403 and refusal.key_prefix == device_key.partition(".")[0]


def test_requests_over_the_rate_get_429_and_are_on_the_trail(device, device_key, ingest_queue, settings):
    settings.INGEST_DEVICE_RATE = "1/minute"
    assert _post(device_key).status_code == 202
    assert _post(device_key).status_code == 429
    [refusal] = device_refusals(device_id=device.pk)
    assert (refusal.status, refusal.code) == (429, "throttled")


def test_a_flood_of_refusals_keeps_only_the_newest(device, device_key, monkeypatch):
    monkeypatch.setattr(refusals, "REPEATS_COLLAPSED_SECONDS", 0.0)
    device_keys_revoke(device=device)
    for _ in range(REFUSALS_KEPT + 15):
        _post(device_key)
    assert len(device_refusals(device_id=device.pk)) == REFUSALS_KEPT


def test_the_same_refusal_repeated_within_a_second_is_written_once(
    device, device_key, ingest_queue, settings
):
    settings.INGEST_DEVICE_RATE = "1/minute"
    assert _post(device_key).status_code == 202
    assert [_post(device_key).status_code for _ in range(20)] == [429] * 20
    device_keys_revoke(device=device)
    device_key_cache.clear()
    assert _post(device_key).status_code == 401
    assert [r.status for r in device_refusals(device_id=device.pk)] == [401, 429]


def test_an_unreachable_cache_loses_the_trail_but_not_the_answer(device, device_key, settings, monkeypatch):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    monkeypatch.setattr(refusals, "_unreachable_until", 0.0)
    device_keys_revoke(device=device)
    assert _post(device_key).status_code == 401
    assert device_refusals(device_id=device.pk) is None


def test_a_used_key_is_stamped_once_a_minute_not_per_request(device, device_key, ingest_queue):
    table = DeviceAPIKey._meta.db_table
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert _post(device_key).status_code == 202
    assert len([q for q in queries if q["sql"].startswith(f'UPDATE "{table}"')]) == 1
    assert DeviceAPIKey.objects.get(device=device).last_used_at is not None


def test_the_stamp_is_written_again_after_the_interval():
    device = DeviceFactory()
    api_key, _ = device_key_issue(device=device)
    now = [1000.0]
    usage = DeviceKeyUsage(clock=lambda: now[0])

    usage.key_used(api_key)
    first = DeviceAPIKey.objects.get(pk=api_key.pk).last_used_at
    DeviceAPIKey.objects.filter(pk=api_key.pk).update(last_used_at=None)
    now[0] += STAMP_INTERVAL_SECONDS - 1
    usage.key_used(api_key)
    assert DeviceAPIKey.objects.get(pk=api_key.pk).last_used_at is None
    now[0] += 2
    usage.key_used(api_key)
    assert first is not None and DeviceAPIKey.objects.get(pk=api_key.pk).last_used_at is not None
