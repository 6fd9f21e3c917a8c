"""What the console shows of each customer table: columns, filters, detail fields.

The customer's tables are read-only here, except acknowledging alerts and a device's
status (their own actions). Lists page by keyset on the primary key, newest first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from django import forms
from django.db.models import QuerySet

from dashboard.filters import (
    Cursor,
    FilterForm,
    InstantField,
    choice_filter,
    device_field,
    resident_field,
    text_filter,
)
from dashboard.paging import Page, readings_page
from dashboard.selectors.care import events_page
from dashboard.timezones import Recency, format_instant
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
from ingest.selectors.references import DEVICE_REFERENCE, RESIDENT_REFERENCE


@dataclass(frozen=True)
class Filter:
    name: str
    # The form field that parses the value (the vocabulary lives in dashboard.filters).
    field: Callable[[], forms.Field]
    # Applied to the parsed value, only when one was given.
    apply: Callable[[QuerySet, Any], QuerySet]


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
    special_page: Callable[[dict, Cursor | None], Page | None] | None = None
    # The URL name of the record's own page (it takes the pk), else the generic detail.
    detail_url_name: str | None = None

    @cached_property
    def filter_form_class(self) -> type[FilterForm]:
        fields = {spec_filter.name: spec_filter.field() for spec_filter in self.filters}
        return type(f"{self.slug.title().replace('-', '')}FilterForm", (FilterForm,), fields)

    def filtered(self, filters: dict) -> QuerySet:
        """The records matching parsed ``filters`` (from ``filter_form_class``)."""
        queryset = self.queryset()
        for spec_filter in self.filters:
            if spec_filter.name in filters:
                queryset = spec_filter.apply(queryset, filters[spec_filter.name])
        return queryset


def _device_filter(path: str = "device") -> Filter:
    return Filter(
        "device",
        lambda: device_field("Device"),
        lambda queryset, value: queryset.filter(DEVICE_REFERENCE.q(value, path=path)),
    )


def _resident_filter(path: str = "device__resident") -> Filter:
    return Filter(
        "resident",
        lambda: resident_field("Resident"),
        lambda queryset, value: queryset.filter(RESIDENT_REFERENCE.q(value, path=path)),
    )


def _time_filters(field_name: str) -> list[Filter]:
    return [
        Filter(
            "since", lambda: InstantField(label="From"), lambda q, v: q.filter(**{f"{field_name}__gte": v})
        ),
        Filter("until", lambda: InstantField(label="To"), lambda q, v: q.filter(**{f"{field_name}__lt": v})),
    ]


def _devices_named(filters: dict) -> QuerySet:
    """The devices a list's device and resident filters name (all devices if neither)."""
    devices = Device.objects.all()
    if (device := filters.get("device")) is not None:
        devices = devices.filter(DEVICE_REFERENCE.q(device))
    if (resident := filters.get("resident")) is not None:
        devices = devices.filter(RESIDENT_REFERENCE.q(resident, path="resident"))
    return devices


def _readings_of_devices_page(filters: dict, cursor: Cursor | None) -> Page | None:
    """With a device or resident filter, read each series from the customer's unique index."""
    if filters.get("device") is None and filters.get("resident") is None:
        return None
    return readings_page(
        device_ids=list(_devices_named(filters).values_list("pk", flat=True)[:100]),
        metric=filters.get("metric"),
        since=filters.get("since"),
        until=filters.get("until"),
        cursor=cursor,
    )


def _events_by_occurrence_page(filters: dict, cursor: Cursor | None) -> Page | None:
    """Events by when they occurred, through each device's (device, occurred_at) index.

    A type or severity filter over every device is left to the generic page (one top-N
    sort of the matching rows): merging per-device scans would walk the whole index of
    each device that has none of them (measured 225 ms against 25 ms at 100 k events).
    """
    if filters.get("device") is None and filters.get("resident") is None:
        if filters.get("event_type") is not None or filters.get("severity") is not None:
            return None
    return events_page(devices=_devices_named(filters), filters=filters, cursor=cursor)


def _compact_json(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


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
            [Filter("name", lambda: text_filter("Name"), lambda q, v: q.filter(full_name__icontains=v))],
            detail_url_name="dashboard:resident",
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
                ("Last seen", lambda d: Recency(d.last_seen_at)),
            ],
            [
                Filter(
                    "serial", lambda: text_filter("Serial"), lambda q, v: q.filter(serial_no__icontains=v)
                ),
                Filter(
                    "type",
                    lambda: choice_filter("Type", DeviceType.choices),
                    lambda q, v: q.filter(device_type=v),
                ),
                Filter(
                    "status",
                    lambda: choice_filter("Status", DeviceStatus.choices),
                    lambda q, v: q.filter(status=v),
                ),
                _resident_filter("resident"),
            ],
            detail_url_name="dashboard:device",
        ),
        RecordSpec(
            "readings",
            "Sensor readings",
            lambda: SensorReading.objects.select_related("device"),
            [
                ("Device", lambda r: r.device),
                ("Metric", lambda r: r.metric),
                ("Value", lambda r: r.value),
                ("Unit", lambda r: r.unit),
                ("Measured", lambda r: r.measured_at),
                ("Received", lambda r: r.received_at),
            ],
            [
                _device_filter(),
                _resident_filter(),
                Filter("metric", lambda: text_filter("Metric"), lambda q, v: q.filter(metric=v)),
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
            lambda: DeviceEvent.objects.select_related("device__resident"),
            [
                ("Occurred", lambda e: e.occurred_at),
                ("Device", lambda e: e.device),
                ("Resident", lambda e: e.device.resident),
                ("Type", lambda e: e.event_type),
                ("Severity", lambda e: e.severity),
                ("Detail", lambda e: _compact_json(e.detail)),
            ],
            [
                _device_filter(),
                _resident_filter(),
                Filter("event_type", lambda: text_filter("Event type"), lambda q, v: q.filter(event_type=v)),
                Filter(
                    "severity",
                    lambda: choice_filter("Severity", [(str(n), str(n)) for n in range(4)]),
                    lambda q, v: q.filter(severity=int(v)),
                ),
                *_time_filters("occurred_at"),
            ],
            time_order="occurred_at",
            special_page=_events_by_occurrence_page,
            detail_url_name="dashboard:event",
        ),
        RecordSpec(
            "webhook-events",
            "Webhook events",
            lambda: WebhookEvent.objects.all(),
            [
                ("Source", lambda w: w.source),
                ("Type", lambda w: w.event_type),
                ("Received", lambda w: w.received_at),
                ("Payload", lambda w: _compact_json(w.payload)),
            ],
            [
                Filter("source", lambda: text_filter("Source"), lambda q, v: q.filter(source=v)),
                Filter("event_type", lambda: text_filter("Event type"), lambda q, v: q.filter(event_type=v)),
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
                        f"{a.acknowledged_by} at {format_instant(a.acknowledged_at)}"
                        if a.acknowledged_at
                        else ""
                    ),
                ),
            ],
            [
                Filter(
                    "status",
                    lambda: choice_filter("Status", AlertStatus.choices),
                    lambda q, v: q.filter(status=v),
                ),
                Filter("alert_type", lambda: text_filter("Type"), lambda q, v: q.filter(alert_type=v)),
                _device_filter(),
                _resident_filter("resident"),
                *_time_filters("created_at"),
            ],
        ),
    ]
}
