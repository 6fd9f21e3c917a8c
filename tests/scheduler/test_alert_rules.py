"""Alert rules with a controlled clock, on the customer's real tables."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ingest.models import Alert, DeviceEvent
from scheduler.services.alert_rules import device_offline_alerts_raise, inactivity_alerts_raise
from tests.factories import DeviceFactory, ResidentFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()
THIRTY_MINUTES = timedelta(minutes=30)


def test_a_silent_device_gets_one_offline_alert_not_two():
    silent = DeviceFactory(serial_no="SIL-1", last_seen_at=NOW - timedelta(hours=2))
    DeviceFactory(last_seen_at=NOW - timedelta(minutes=5))  # seen recently

    assert device_offline_alerts_raise(now=NOW, silent_after=THIRTY_MINUTES) == 1
    assert device_offline_alerts_raise(now=NOW + timedelta(minutes=10), silent_after=THIRTY_MINUTES) == 0

    [alert] = Alert.objects.all()
    assert (alert.alert_type, alert.device_id, alert.resident_id, alert.status) == (
        "device_offline",
        silent.id,
        silent.resident_id,
        "open",
    )
    assert "SIL-1" in alert.message


def test_an_acknowledged_offline_alert_is_not_reopened_until_the_device_goes_silent_again():
    device = DeviceFactory(last_seen_at=NOW - timedelta(hours=2))
    device_offline_alerts_raise(now=NOW, silent_after=THIRTY_MINUTES)
    Alert.objects.update(status="acknowledged")
    assert device_offline_alerts_raise(now=NOW + timedelta(minutes=1), silent_after=THIRTY_MINUTES) == 0
    # Heard from again (after the alert was raised), then silent again: a new alert.
    device.last_seen_at = timezone.now() + timedelta(seconds=1)
    device.save(update_fields=["last_seen_at"])
    assert (
        device_offline_alerts_raise(now=timezone.now() + timedelta(hours=1), silent_after=THIRTY_MINUTES) == 1
    )


@pytest.mark.parametrize("status", ["inactive", "retired"])
def test_inactive_or_retired_devices_raise_no_offline_alert(status):
    DeviceFactory(status=status, last_seen_at=NOW - timedelta(days=3))
    assert device_offline_alerts_raise(now=NOW, silent_after=THIRTY_MINUTES) == 0


def test_a_device_that_never_reported_counts_from_its_installation():
    DeviceFactory(installed_at=NOW - timedelta(hours=1))
    DeviceFactory(installed_at=NOW - timedelta(minutes=10))
    assert device_offline_alerts_raise(now=NOW, silent_after=THIRTY_MINUTES) == 1


def _motion_sensor(resident, **fields):
    return DeviceFactory(
        resident=resident, device_type="motion", installed_at=NOW - timedelta(days=10), **fields
    )


def test_a_resident_without_motion_or_door_events_gets_one_inactivity_alert():
    quiet = ResidentFactory(full_name="Quiet Quentin")
    _motion_sensor(quiet)
    busy = ResidentFactory()
    sensor = _motion_sensor(busy)
    DeviceEvent.objects.create(
        device=sensor, event_type="motion", occurred_at=NOW - timedelta(hours=1), detail={}
    )

    assert inactivity_alerts_raise(now=NOW, quiet_for=timedelta(hours=12)) == 1
    assert inactivity_alerts_raise(now=NOW + timedelta(hours=1), quiet_for=timedelta(hours=12)) == 0

    [alert] = Alert.objects.all()
    assert (alert.alert_type, alert.resident_id, alert.device_id) == ("inactivity", quiet.id, None)
    assert "Quiet Quentin" in alert.message


def test_no_inactivity_alert_without_active_activity_sensors():
    ResidentFactory()  # no devices at all
    _motion_sensor(ResidentFactory(), status="inactive")
    DeviceFactory(resident=ResidentFactory(), device_type="vital", installed_at=NOW - timedelta(days=10))
    _motion_sensor(ResidentFactory(is_active=False))
    assert inactivity_alerts_raise(now=NOW, quiet_for=timedelta(hours=12)) == 0


def test_a_freshly_installed_sensor_raises_nothing_yet():
    DeviceFactory(resident=ResidentFactory(), device_type="door", installed_at=NOW - timedelta(hours=1))
    assert inactivity_alerts_raise(now=NOW, quiet_for=timedelta(hours=12)) == 0


def test_an_acknowledged_inactivity_alert_is_not_repeated_within_the_window():
    resident = ResidentFactory()
    _motion_sensor(resident)
    quiet = timedelta(hours=12)
    assert inactivity_alerts_raise(now=NOW, quiet_for=quiet) == 1
    Alert.objects.update(status="acknowledged", created_at=NOW)
    assert inactivity_alerts_raise(now=NOW + timedelta(hours=1), quiet_for=quiet) == 0
    assert inactivity_alerts_raise(now=NOW + timedelta(hours=13), quiet_for=quiet) == 1
