"""A small care home as the care pages show it: residents with devices, vitals, events, alerts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from ingest.models import Alert, Device, DeviceEvent, Resident, SensorReading
from ingest.services.devices import device_key_issue
from tests.factories import DeviceFactory, ResidentFactory


@dataclass
class CareHome:
    margaret: Resident
    watch: Device
    sos_button: Device
    fall_event: DeviceEvent
    fall_alert: Alert
    key_prefix: str


def care_home() -> CareHome:
    now = timezone.now()
    margaret = ResidentFactory(
        full_name="Margaret Hale", phone="+44 7700 900461", emergency_contact="+44 20 7946 0321"
    )
    ResidentFactory(full_name="John Thornton", phone="+44 7700 900462")
    watch = DeviceFactory(
        serial_no="VIT-0042", device_type="vital", resident=margaret, firmware_version="2.4.1"
    )
    sos_button = DeviceFactory(serial_no="SOS-0042", device_type="sos_button", resident=margaret)
    DeviceFactory(serial_no="ENV-0042", device_type="environment", resident=None)
    SensorReading.objects.bulk_create(
        SensorReading(
            device=watch,
            metric=metric,
            value=value + (minute % 7),
            unit=unit,
            measured_at=now - timedelta(minutes=minute),
        )
        for minute in range(0, 240, 2)
        for metric, value, unit in [("heart_rate", 68.0, "bpm"), ("spo2", 93.0, "%")]
    )
    for hours in (30, 20, 6):
        DeviceEvent.objects.create(
            device=watch,
            event_type="low_battery",
            severity=1,
            occurred_at=now - timedelta(hours=hours),
            detail={},
        )
    fall_event = DeviceEvent.objects.create(
        device=watch,
        event_type="fall_detected",
        severity=3,
        occurred_at=now - timedelta(hours=7, minutes=3),
        detail={"room": "bathroom", "impact_g": 3.1, "confidence": 0.97},
    )
    fall_alert = Alert.objects.create(
        resident=margaret,
        device=watch,
        alert_type="fall_detected",
        message="Critical event fall_detected from device VIT-0042",
    )
    api_key, _ = device_key_issue(device=watch, name="factory key")
    return CareHome(margaret, watch, sos_button, fall_event, fall_alert, api_key.prefix)
