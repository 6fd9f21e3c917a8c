"""A ready-to-try local environment: a staff user, a resident and a device with a key."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction

from ingest.models import Device, DeviceAPIKey, DeviceType, Resident
from ingest.services.devices import device_create, device_key_issue

DEMO_SERIAL_NO = "DEMO-0001"
DEMO_STAFF_USERNAME = "admin"


@dataclass(frozen=True)
class DemoEnvironment:
    staff_username: str
    staff_password: str
    device_serial_no: str
    device_key: str


def _read_secret(path: Path) -> str | None:
    return path.read_text().strip() if path.exists() else None


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")
    path.chmod(0o600)


def _key_belongs_to(key: str, device: Device) -> bool:
    try:
        return DeviceAPIKey.objects.get_from_key(key).device_id == device.id
    except DeviceAPIKey.DoesNotExist:
        return False


@transaction.atomic
def demo_environment_ensure(*, secrets_dir: Path) -> DemoEnvironment:
    """Create what is missing; reuse what a previous run made (its secrets are in ``secrets_dir``).

    Only the plain secrets of this demo are written to ``secrets_dir`` (git-ignored), so
    that the README's curl example can read the key.
    """
    password_file = secrets_dir / "admin-password"
    key_file = secrets_dir / "device-key"

    user_model = get_user_model()
    password = _read_secret(password_file)
    staff = user_model.objects.filter(username=DEMO_STAFF_USERNAME).first()
    if staff is None or password is None or not staff.check_password(password):
        password = secrets.token_urlsafe(12)
        staff = staff or user_model(username=DEMO_STAFF_USERNAME)
        staff.is_staff = staff.is_superuser = staff.is_active = True
        staff.set_password(password)
        staff.save()
        _write_secret(password_file, password)

    device = Device.objects.filter(serial_no=DEMO_SERIAL_NO).first()
    if device is None:
        resident = Resident.objects.create(full_name="Demo Resident")
        device = device_create(serial_no=DEMO_SERIAL_NO, device_type=DeviceType.VITAL, resident=resident)
    key = _read_secret(key_file)
    if key is None or not _key_belongs_to(key, device):
        _, key = device_key_issue(device=device, name="demo key")
        _write_secret(key_file, key)
    return DemoEnvironment(DEMO_STAFF_USERNAME, password, DEMO_SERIAL_NO, key)
