from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from ingest.services.devices import device_key_issue
from tests.factories import DeviceFactory


@pytest.fixture
def device(db):
    return DeviceFactory()


@pytest.fixture
def device_key(device) -> str:
    _, key = device_key_issue(device=device)
    return key


@pytest.fixture
def device_client(device_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {device_key}")
    return client
