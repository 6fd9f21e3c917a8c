"""Devices and their API keys."""

from __future__ import annotations

from django.db import transaction

from ingest.models import Device, DeviceAPIKey, DeviceType, Resident


def device_create(*, serial_no: str, device_type: str, resident: Resident | None = None) -> Device:
    if device_type not in DeviceType.values:
        raise ValueError(f"unknown device type {device_type!r}; one of {', '.join(DeviceType.values)}")
    return Device.objects.create(serial_no=serial_no, device_type=device_type, resident=resident)


def device_key_issue(*, device: Device, name: str = "") -> tuple[DeviceAPIKey, str]:
    """Create a key for the device. The plain key is returned once; only its hash is kept."""
    return DeviceAPIKey.objects.create_key(device=device, name=name or f"{device.serial_no} key")


@transaction.atomic
def device_keys_revoke(*, device: Device) -> int:
    """Revoke every key of the device; returns how many were still usable."""
    return DeviceAPIKey.objects.filter(device=device, revoked=False).update(revoked=True)


def device_key_revoke(*, device: Device, prefix: str) -> bool:
    """Revoke one key of the device, named by its prefix; False if it was not usable."""
    return bool(DeviceAPIKey.objects.filter(device=device, prefix=prefix, revoked=False).update(revoked=True))
