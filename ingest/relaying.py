"""Gateways: records a gateway relays for the other devices of its household.

A reading or event may name a device by serial number in ``device``. Only a gateway may
do so, and only for an active device of its own resident (the household); a record
without ``device``, or naming the gateway itself, is the gateway's own. Whoever the
records come through (HTTP, gRPC, MQTT, an operator's edit), they are checked here, as
part of ``DeviceRecordsSerializer``, with every serial of a request resolved in one
query. A relayed record carries the device's id on the queue (``RECORD_DEVICE_ID``): the
worker stores it under that device, the message stays the gateway's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Subquery

from ingest.messages import RECORD_DEVICE, RECORD_DEVICE_ID
from ingest.models import Device, DeviceStatus, DeviceType

RECORD_KINDS = ("readings", "events")
SERIAL_MAX_LENGTH = Device._meta.get_field("serial_no").max_length

NOT_A_SERIAL = f"Must be a device's serial number: a string of 1 to {SERIAL_MAX_LENGTH} characters."
NOT_A_GATEWAY = (
    "Only a gateway may send records for another device; leave 'device' out for this device's own records."
)
NO_HOUSEHOLD = "This gateway is not assigned to a resident, so it has no household devices to send for."
# Unknown and another household's device get the same answer: a gateway learns nothing
# about devices outside its household.
NOT_IN_HOUSEHOLD = "No device with this serial number in this gateway's household."


def not_active(status: str) -> str:
    return f"The device is {status}: records are accepted only for active devices."


@dataclass
class RelayedDevices:
    """The devices a request's records name: ids by record, or the reasons they are refused."""

    # (kind, index) -> (serial as sent, device id)
    devices: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    # In the serializer's shape: {"readings": {3: {"device": ["<reason>"]}}}
    errors: dict[str, dict[int, dict[str, list[str]]]] = field(default_factory=dict)

    def refuse(self, kind: str, index: int, reason: str) -> None:
        self.errors.setdefault(kind, {})[index] = {RECORD_DEVICE: [reason]}

    def attach(self, validated: dict[str, list[dict[str, Any]]]) -> None:
        """Mark the validated records (one for one with the request's) with their devices."""
        for (kind, index), (serial_no, device_id) in self.devices.items():
            record = validated[kind][index]
            record[RECORD_DEVICE] = serial_no
            record[RECORD_DEVICE_ID] = device_id


def _named_devices(data: Any) -> list[tuple[str, int, Any]]:
    if not isinstance(data, dict):
        return []
    named = []
    for kind in RECORD_KINDS:
        records = data.get(kind)
        if isinstance(records, list):
            named.extend(
                (kind, index, record[RECORD_DEVICE])
                for index, record in enumerate(records)
                if isinstance(record, dict) and RECORD_DEVICE in record
            )
    return named


def relayed_devices_resolve(*, sender: Device | None, data: Any) -> RelayedDevices:
    """Check every record of ``data`` that names a device; one query for all of them."""
    relayed = RelayedDevices()
    named = _named_devices(data)
    if not named:
        return relayed
    is_gateway = sender is not None and sender.device_type == DeviceType.GATEWAY
    wanted: list[tuple[str, int, str]] = []
    for kind, index, serial_no in named:
        if not isinstance(serial_no, str) or not 0 < len(serial_no) <= SERIAL_MAX_LENGTH:
            relayed.refuse(kind, index, NOT_A_SERIAL)
        elif not is_gateway:
            relayed.refuse(kind, index, NOT_A_GATEWAY)
        elif serial_no == sender.serial_no:
            continue  # the gateway's own record, named explicitly
        elif sender.resident_id is None:
            relayed.refuse(kind, index, NO_HOUSEHOLD)
        else:
            wanted.append((kind, index, serial_no))
    if not wanted:
        return relayed
    # The gateway's household as the database has it now, in the same query: the sender
    # may be a web process's cached copy from before the gateway moved house.
    current_household = Device.objects.filter(pk=sender.pk, device_type=DeviceType.GATEWAY).values(
        "resident_id"
    )[:1]
    household = {
        serial_no: (device_id, status)
        for serial_no, device_id, status in Device.objects.filter(
            serial_no__in={serial_no for _, _, serial_no in wanted}, resident_id=Subquery(current_household)
        ).values_list("serial_no", "id", "status")
    }
    for kind, index, serial_no in wanted:
        device_id, status = household.get(serial_no, (None, None))
        if device_id is None:
            relayed.refuse(kind, index, NOT_IN_HOUSEHOLD)
        elif status != DeviceStatus.ACTIVE:
            relayed.refuse(kind, index, not_active(status))
        else:
            relayed.devices[(kind, index)] = (serial_no, device_id)
    return relayed


def field_errors_merge(errors: dict, more: dict) -> dict:
    """``errors`` (a serializer's) with ``more`` added, record by record."""
    merged = dict(errors)
    for kind, by_index in more.items():
        present = merged.get(kind)
        if not isinstance(present, dict):
            # Absent, or the list itself was refused (then no record was resolved either).
            merged.setdefault(kind, by_index)
            continue
        combined = dict(present)
        for index, record_errors in by_index.items():
            combined[index] = {**combined.get(index, {}), **record_errors}
        merged[kind] = dict(sorted(combined.items()))
    return merged
