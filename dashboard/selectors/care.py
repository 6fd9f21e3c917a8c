"""Reads for the care pages: a resident, a device, an event, and events by when they occurred.

Every read here goes through an index of the customer's schema, so the pages stay cheap
at 10 M readings: a device's events through ``ix_device_events_device_time``, its
readings and latest values through ``uq_sensor_readings_point`` (device, metric, time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.db.models import Q

from config.replica import read_connection
from dashboard.filters import Cursor
from dashboard.paging import PAGE_SIZE, Page, device_metrics, page_of_ids, readings_page
from ingest.models import Alert, AlertStatus, Device, DeviceAPIKey, DeviceEvent, Resident, SensorReading
from ingest.refusals import Refusal, device_refusals

RECENT = 20


def detail_json(value) -> str:
    """A JSON value as an operator reads it: indented, keys sorted, non-ASCII kept."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def latest_readings(*, device_ids: list[int]) -> list[SensorReading]:
    """The newest reading of every (device, metric) series: one index probe per series."""
    series = [(device_id, metric) for device_id in device_ids for metric in device_metrics(device_id)]
    if not series:
        return []
    with read_connection(SensorReading).cursor() as cursor:
        cursor.execute(
            """
            SELECT latest.id FROM unnest(%s::bigint[], %s::varchar[]) AS series(device_id, metric)
            CROSS JOIN LATERAL (
                SELECT s.id FROM sensor_readings s
                WHERE s.device_id = series.device_id AND s.metric = series.metric
                ORDER BY s.device_id DESC, s.metric DESC, s.measured_at DESC
                LIMIT 1
            ) AS latest
            """,
            [[device_id for device_id, _ in series], [metric for _, metric in series]],
        )
        ids = [row[0] for row in cursor.fetchall()]
    return sorted(
        SensorReading.objects.select_related("device").filter(pk__in=ids),
        key=lambda reading: (reading.device.serial_no, reading.metric),
    )


@dataclass(frozen=True)
class ResidentCare:
    resident: Resident
    devices: list[Device]
    open_alerts: list[Alert]
    latest_vitals: list[SensorReading]


def resident_care(*, resident: Resident) -> ResidentCare:
    devices = list(resident.devices.order_by("serial_no"))
    device_ids = [device.pk for device in devices]
    open_alerts = list(
        Alert.objects.select_related("device")
        .filter(Q(resident=resident) | Q(device_id__in=device_ids), status=AlertStatus.OPEN)
        .order_by("-created_at")[:50]
    )
    return ResidentCare(
        resident=resident,
        devices=devices,
        open_alerts=open_alerts,
        latest_vitals=latest_readings(device_ids=device_ids),
    )


@dataclass(frozen=True)
class DeviceCare:
    device: Device
    events: list[DeviceEvent]
    readings: list[SensorReading]
    keys: list[DeviceAPIKey]
    # None when the trail cannot be read (the cache is unreachable): shown as unknown.
    refusals: list[Refusal] | None
    open_alerts: list[Alert]


def device_care(*, device: Device) -> DeviceCare:
    return DeviceCare(
        device=device,
        events=list(DeviceEvent.objects.filter(device=device).order_by("-occurred_at", "-pk")[:RECENT]),
        readings=readings_page(
            device_ids=[device.pk], metric=None, since=None, until=None, cursor=None, size=RECENT
        ).rows,
        keys=list(DeviceAPIKey.objects.filter(device=device).order_by("revoked", "-created")),
        refusals=device_refusals(device_id=device.pk),
        open_alerts=list(
            Alert.objects.filter(device=device, status=AlertStatus.OPEN).order_by("-created_at")[:20]
        ),
    )


def events_page(*, devices, filters: dict, cursor: Cursor | None, size: int = PAGE_SIZE) -> Page:
    """Events newest first by ``occurred_at``, as a merge of each device's index scan.

    The schema indexes events by (device, occurred_at) only: ordering the whole table by
    occurred_at would sort it. Each device's newest events are read from its index
    (bounded, one probe each) and the merge keeps the newest ``size``.
    """
    device_ids = list(devices.values_list("pk", flat=True))
    if not device_ids:
        return Page([], None)
    bounds, params = [], []
    if (event_type := filters.get("event_type")) is not None:
        bounds.append("e.event_type = %s")
        params.append(event_type)
    if (severity := filters.get("severity")) is not None:
        bounds.append("e.severity = %s")
        params.append(int(severity))
    if (since := filters.get("since")) is not None:
        bounds.append("e.occurred_at >= %s")
        params.append(since)
    if (until := filters.get("until")) is not None:
        bounds.append("e.occurred_at < %s")
        params.append(until)
    if cursor is not None and cursor.at is not None:
        bounds.append("(e.occurred_at, e.id) < (%s, %s)")
        params += [cursor.at, cursor.last_id]
    where = "".join(f" AND {bound}" for bound in bounds)
    with read_connection(DeviceEvent).cursor() as cursor_:
        cursor_.execute(
            f"""
            SELECT page.id FROM unnest(%s::bigint[]) AS listed(device_id)
            CROSS JOIN LATERAL (
                SELECT e.id, e.occurred_at FROM device_events e
                WHERE e.device_id = listed.device_id{where}
                ORDER BY e.occurred_at DESC, e.id DESC
                LIMIT %s
            ) AS page
            ORDER BY page.occurred_at DESC, page.id DESC
            LIMIT %s
            """,
            [device_ids, *params, size + 1, size + 1],
        )
        ids = [row[0] for row in cursor_.fetchall()]
    return page_of_ids(
        DeviceEvent.objects.select_related("device__resident"), ids, time_field="occurred_at", size=size
    )
