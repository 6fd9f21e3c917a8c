"""Management commands: create_device_key and consume_queue."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from ingest.models import Device, DeviceAPIKey

pytestmark = pytest.mark.django_db


def _issue(*args) -> str:
    stdout = io.StringIO()
    call_command("create_device_key", *args, stdout=stdout, stderr=io.StringIO())
    return stdout.getvalue().strip().splitlines()[-1]


def test_create_device_key_creates_the_device_and_prints_a_key_stored_only_hashed():
    key = _issue("GW-1", "--create", "--type", "gateway")

    device = Device.objects.get(serial_no="GW-1")
    assert device.device_type == "gateway"
    stored = DeviceAPIKey.objects.get(device=device)
    assert key.startswith(stored.prefix + ".")
    assert key not in stored.hashed_key and stored.hashed_key.startswith("sha512$$")
    assert DeviceAPIKey.objects.get_from_key(key) == stored


def test_a_second_key_for_an_existing_device_differs():
    first = _issue("GW-2", "--create", "--type", "gateway")
    second = _issue("GW-2")
    assert first != second
    assert DeviceAPIKey.objects.filter(device__serial_no="GW-2").count() == 2


def test_unknown_device_without_create_is_refused():
    with pytest.raises(CommandError, match="no device with serial number NOPE"):
        _issue("NOPE")


def test_create_needs_a_type_and_a_new_serial():
    with pytest.raises(CommandError, match="--create needs --type"):
        _issue("GW-3", "--create")
    _issue("GW-4", "--create", "--type", "door")
    with pytest.raises(CommandError, match="already exists"):
        _issue("GW-4", "--create", "--type", "door")


def test_revoke_device_keys_makes_every_key_unusable():
    key = _issue("GW-5", "--create", "--type", "gateway")
    stdout = io.StringIO()
    call_command("revoke_device_keys", "GW-5", stdout=stdout)
    assert "Revoked 1 key(s)" in stdout.getvalue()
    assert not DeviceAPIKey.objects.is_valid(key)


def test_revoke_device_keys_of_an_unknown_device_is_refused():
    with pytest.raises(CommandError, match="no device"):
        call_command("revoke_device_keys", "NOPE")
