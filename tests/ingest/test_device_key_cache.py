"""Verified keys are served from memory, and a revoked key or retired device is refused within 2 s."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient

from ingest.authentication import DeviceKeyAuthentication
from ingest.device_key_cache import DeviceKeyCache, device_key_cache
from ingest.models import DeviceAPIKey, DeviceStatus
from ingest.services.devices import device_key_issue, device_keys_revoke
from tests.factories import DeviceFactory
from tests.web import gunicorn_server, http_request


def _reading_body() -> str:
    measured_at = (timezone.now() - timedelta(seconds=5)).isoformat()
    return json.dumps({"readings": [{"metric": "heart_rate", "value": 70, "measured_at": measured_at}]})


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cache_on(settings):
    settings.DEVICE_KEY_CACHE_SECONDS = 1
    device_key_cache.clear()
    yield
    device_key_cache.clear()


@pytest.mark.django_db
@pytest.mark.usefixtures("cache_on")
def test_a_cached_key_costs_no_query_and_the_accept_path_none_either(
    device_client, ingest_queue, django_assert_num_queries
):
    body = _reading_body()
    assert (
        device_client.post("/api/v1/ingest/", data=body, content_type="application/json").status_code == 202
    )

    with django_assert_num_queries(0):
        response = device_client.post("/api/v1/ingest/", data=body, content_type="application/json")

    assert response.status_code == 202


@pytest.mark.django_db
def test_without_the_cache_every_request_looks_its_key_up(device_key, settings, django_assert_num_queries):
    settings.DEVICE_KEY_CACHE_SECONDS = 0
    request = RequestFactory().get("/", HTTP_AUTHORIZATION=f"Api-Key {device_key}")
    DeviceKeyAuthentication().authenticate(request)

    with django_assert_num_queries(1):
        DeviceKeyAuthentication().authenticate(request)


@pytest.mark.django_db
def test_revoked_keys_and_inactive_devices_leave_the_cache_at_the_next_revalidation(
    settings, django_assert_num_queries
):
    settings.DEVICE_KEY_CACHE_SECONDS = 1
    clock = _Clock()
    cache = DeviceKeyCache(clock=clock)
    revoked_device, retired_device = DeviceFactory(), DeviceFactory()
    _, revoked_key = device_key_issue(device=revoked_device)
    _, retired_key = device_key_issue(device=retired_device)
    assert cache.key_of(revoked_key) is not None and cache.key_of(retired_key) is not None

    device_keys_revoke(device=revoked_device)
    with connection.cursor() as cursor:  # as the customer's own tools would, behind the ORM's back
        cursor.execute("UPDATE devices SET status = 'retired' WHERE id = %s", [retired_device.pk])
    clock.now += 0.9
    with django_assert_num_queries(0):
        assert cache.key_of(revoked_key) is not None  # still within the bound: from memory

    clock.now += 0.1
    with django_assert_num_queries(2):  # one revalidation for all keys, then the key's own lookup
        assert cache.key_of(revoked_key) is None
    looked_up = cache.key_of(retired_key)
    assert looked_up.device.status == DeviceStatus.RETIRED


@pytest.mark.django_db
def test_a_deleted_key_and_an_expired_key_are_refused(settings):
    settings.DEVICE_KEY_CACHE_SECONDS = 1
    clock = _Clock()
    cache = DeviceKeyCache(clock=clock)
    _, deleted_key = device_key_issue(device=DeviceFactory())
    api_key, expiring_key = device_key_issue(device=DeviceFactory())
    assert cache.key_of(deleted_key) is not None and cache.key_of(expiring_key) is not None

    DeviceAPIKey.objects.filter(prefix=deleted_key.partition(".")[0]).delete()
    DeviceAPIKey.objects.filter(pk=api_key.pk).update(expiry_date=timezone.now() - timedelta(seconds=1))
    clock.now += 1

    assert cache.key_of(deleted_key) is None
    assert cache.key_of(expiring_key).has_expired


@pytest.mark.django_db
def test_the_cache_keeps_at_most_the_configured_number_of_keys(settings):
    settings.DEVICE_KEY_CACHE_SECONDS = 60
    settings.DEVICE_KEY_CACHE_MAX_KEYS = 2
    cache = DeviceKeyCache(clock=_Clock())
    keys = [device_key_issue(device=DeviceFactory())[1] for _ in range(3)]
    for key in keys:
        cache.key_of(key)

    assert len(cache._keys) == 2


@pytest.mark.usefixtures("committed_db")
def test_a_revoked_key_and_a_retired_device_are_refused_within_2_s_by_every_gunicorn_worker(ingest_queue):
    revoked_device, retired_device = DeviceFactory(), DeviceFactory()
    _, revoked_key = device_key_issue(device=revoked_device)
    _, retired_key = device_key_issue(device=retired_device)

    def post(key: str) -> int:
        headers = {"Content-Type": "application/json", "Authorization": f"Api-Key {key}"}
        return http_request(port, "POST", "/api/v1/ingest/", _reading_body(), headers)[0]

    with gunicorn_server(ingest_queue, workers=2, TEST_DEVICE_KEY_CACHE_SECONDS="1") as port:
        # Four clients at once, each request on its own connection: both workers serve some.
        with ThreadPoolExecutor(max_workers=4) as pool:
            warm = list(pool.map(post, [revoked_key, retired_key] * 20))
        assert warm == [202] * 40

        device_keys_revoke(device=revoked_device)
        with connection.cursor() as cursor:
            cursor.execute("UPDATE devices SET status = 'retired' WHERE id = %s", [retired_device.pk])
        changed = time.monotonic()
        answers = []

        def probe(key: str) -> None:
            sent = time.monotonic() - changed
            answers.append((sent, key, post(key)))

        with ThreadPoolExecutor(max_workers=4) as pool:
            while time.monotonic() - changed < 3.5:
                list(pool.map(probe, [revoked_key, retired_key] * 2))

    late = [(key, status) for sent, key, status in answers if sent >= 2.0]
    assert len(late) >= 8, answers
    assert all(status == 401 for key, status in late if key == revoked_key), answers
    assert all(status == 403 for key, status in late if key == retired_key), answers


@pytest.mark.django_db
def test_an_unknown_key_is_still_a_401(cache_on):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Api-Key abcdefgh.notakey")
    assert (
        client.post("/api/v1/ingest/", data=_reading_body(), content_type="application/json").status_code
        == 401
    )


@pytest.mark.django_db
def test_a_key_is_never_trusted_past_the_bound_when_the_recheck_fails(
    cache_on, device_client, ingest_queue, monkeypatch
):
    from django.db import OperationalError

    import ingest.device_key_cache as key_cache

    body = _reading_body()
    assert (
        device_client.post("/api/v1/ingest/", data=body, content_type="application/json").status_code == 202
    )

    def database_down(key_ids):
        raise OperationalError("connection refused")

    monkeypatch.setattr(key_cache, "_keys_no_longer_usable", database_down)
    device_key_cache._validated_at -= 1  # the bound has passed

    response = device_client.post("/api/v1/ingest/", data=body, content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (503, "database_unavailable")
