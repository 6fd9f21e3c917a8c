"""What the console shows of each customer table: columns, filters, detail fields.

The customer's tables are read-only here, except acknowledging alerts and a device's
status (their own actions). Lists page by keyset on the primary key, newest first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.db.models import QuerySet

from dashboard.selectors import Page, parse_instant, readings_page
from ingest.models import (
    Alert,
    AlertStatus,
    Device,
    DeviceEvent,
    DeviceStatus,
    DeviceType,
    Resident,
    SensorReading,
    WebhookEvent,
)


@dataclass(frozen=True)
class Filter:
    name: str
    label: str
    apply: Callable[[QuerySet, str], QuerySet]
    choices: list[tuple[str, str]] | None = None
    kind: str = "text"  # text | datetime-local | select


@dataclass(frozen=True)
class RecordSpec:
    slug: str
    title: str
    queryset: Callable[[], QuerySet]
    columns: list[tuple[str, Callable]]
    filters: list[Filter] = field(default_factory=list)
    # Newest first by this column (it must be indexed), else by id.
    time_order: str | None = None
    # A page built another way for some filters (returns None to use the generic one).
    special_page: Callable[[dict, str | None], Page | None] | None = None

    def filtered(self, params) -> tuple[QuerySet, dict]:
        queryset = self.queryset()
        applied = {}
        for spec in self.filters:
            value = (params.get(spec.name) or "").strip()
            if value:
                queryset = spec.apply(queryset, value)
                applied[spec.name] = value
        return queryset, applied


def _device(queryset, value, path="device"):
    if value.isdigit():
        return queryset.filter(**{f"{path}_id": int(value)})
    return queryset.filter(**{f"{path}__serial_no": value})


def _resident(queryset, value, path="device__resident"):
    if value.isdigit():
        return queryset.filter(**{f"{path}_id": int(value)})
    return queryset.filter(**{f"{path}__full_name__icontains": value})


def _since(field_name):
    def apply(queryset, value):
        instant = parse_instant(value)
        return queryset.filter(**{f"{field_name}__gte": instant}) if instant else queryset

    return apply


def _until(field_name):
    def apply(queryset, value):
        instant = parse_instant(value)
        return queryset.filter(**{f"{field_name}__lt": instant}) if instant else queryset

    return apply


def _time_filters(field_name: str) -> list[Filter]:
    return [
        Filter("since", "From", _since(field_name), kind="datetime-local"),
        Filter("until", "To", _until(field_name), kind="datetime-local"),
    ]


def _readings_of_devices_page(params, cursor: str | None) -> Page | None:
    """With a device or resident filter, read each series from the customer's unique index."""
    device, resident = (params.get("device") or "").strip(), (params.get("resident") or "").strip()
    if not device and not resident:
        return None
    devices = Device.objects.all()
    if device:
        devices = devices.filter(pk=int(device)) if device.isdigit() else devices.filter(serial_no=device)
    if resident:
        devices = (
            devices.filter(resident_id=int(resident))
            if resident.isdigit()
            else devices.filter(resident__full_name__icontains=resident)
        )
    return readings_page(
        device_ids=list(devices.values_list("pk", flat=True)[:100]),
        metric=(params.get("metric") or "").strip() or None,
        since=parse_instant(params.get("since")),
        until=parse_instant(params.get("until")),
        cursor=cursor,
    )


RECORDS: dict[str, RecordSpec] = {
    spec.slug: spec
    for spec in [
        RecordSpec(
            "residents",
            "Residents",
            lambda: Resident.objects.all(),
            [
                ("Name", lambda r: r.full_name),
                ("Phone", lambda r: r.phone),
                ("Active", lambda r: r.is_active),
                ("Since", lambda r: r.created_at),
            ],
            [Filter("name", "Name", lambda q, v: q.filter(full_name__icontains=v))],
        ),
        RecordSpec(
            "devices",
            "Devices",
            lambda: Device.objects.select_related("resident"),
            [
                ("Serial", lambda d: d.serial_no),
                ("Type", lambda d: d.get_device_type_display()),
                ("Status", lambda d: d.status),
                ("Resident", lambda d: d.resident),
                ("Last seen", lambda d: d.last_seen_at),
            ],
            [
                Filter("serial", "Serial", lambda q, v: q.filter(serial_no__icontains=v)),
                Filter("type", "Type", lambda q, v: q.filter(device_type=v), DeviceType.choices, "select"),
                Filter("status", "Status", lambda q, v: q.filter(status=v), DeviceStatus.choices, "select"),
                Filter("resident", "Resident", lambda q, v: _resident(q, v, "resident")),
            ],
        ),
        RecordSpec(
            "readings",
            "Sensor readings",
            lambda: SensorReading.objects.select_related("device"),
            [
                ("Device", lambda r: r.device.serial_no),
                ("Metric", lambda r: r.metric),
                ("Value", lambda r: r.value),
                ("Unit", lambda r: r.unit),
                ("Measured", lambda r: r.measured_at),
                ("Received", lambda r: r.received_at),
            ],
            [
                Filter("device", "Device", _device),
                Filter("resident", "Resident", _resident),
                Filter("metric", "Metric", lambda q, v: q.filter(metric=v)),
                *_time_filters("measured_at"),
            ],
            # ix_sensor_readings_measured and uq_sensor_readings_point (device, metric, measured_at)
            # serve this order, filtered or not; by id, a rare device+metric would scan the table.
            time_order="measured_at",
            special_page=_readings_of_devices_page,
        ),
        RecordSpec(
            "events",
            "Device events",
            lambda: DeviceEvent.objects.select_related("device"),
            [
                ("Device", lambda e: e.device.serial_no),
                ("Type", lambda e: e.event_type),
                ("Severity", lambda e: e.severity),
                ("Occurred", lambda e: e.occurred_at),
                ("Detail", lambda e: e.detail),
            ],
            [
                Filter("device", "Device", _device),
                Filter("resident", "Resident", _resident),
                Filter("event_type", "Event type", lambda q, v: q.filter(event_type=v)),
                Filter(
                    "severity",
                    "Severity",
                    lambda q, v: q.filter(severity=int(v)) if v.isdigit() else q,
                    [(str(n), str(n)) for n in range(4)],
                    "select",
                ),
                *_time_filters("occurred_at"),
            ],
        ),
        RecordSpec(
            "webhook-events",
            "Webhook events",
            lambda: WebhookEvent.objects.all(),
            [
                ("Source", lambda w: w.source),
                ("Type", lambda w: w.event_type),
                ("Received", lambda w: w.received_at),
                ("Payload", lambda w: w.payload),
            ],
            [
                Filter("source", "Source", lambda q, v: q.filter(source=v)),
                Filter("event_type", "Event type", lambda q, v: q.filter(event_type=v)),
                *_time_filters("received_at"),
            ],
        ),
        RecordSpec(
            "alerts",
            "Alerts",
            lambda: Alert.objects.select_related("device", "resident"),
            [
                ("Type", lambda a: a.alert_type),
                ("Status", lambda a: a.status),
                ("Resident", lambda a: a.resident),
                ("Device", lambda a: a.device),
                ("Created", lambda a: a.created_at),
                (
                    "Acknowledged",
                    lambda a: (
                        f"{a.acknowledged_by} at {a.acknowledged_at:%Y-%m-%d %H:%M}"
                        if a.acknowledged_at
                        else ""
                    ),
                ),
            ],
            [
                Filter("status", "Status", lambda q, v: q.filter(status=v), AlertStatus.choices, "select"),
                Filter("alert_type", "Type", lambda q, v: q.filter(alert_type=v)),
                Filter("device", "Device", lambda q, v: _device(q, v)),
                Filter("resident", "Resident", lambda q, v: _resident(q, v, "resident")),
                *_time_filters("created_at"),
            ],
        ),
    ]
}
