"""Bulk file import: a large CSV or NDJSON file streamed into the pipeline in chunks.

Each line is validated exactly like the API; a bad line is reported with its number and
never blocks the good ones. Every chunk gets a message id derived from its content, so
importing the same file again publishes nothing the ledger has already processed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.utils import timezone

from ingest.json_input import json_parse
from ingest.models import Device, DeviceStatus
from ingest.record_validation import InstantWindow, device_records_split, reading_validate
from ingest.services.ingestion import (
    CHUNKS_PER_GROUP,
    RecordsChunk,
    records_chunks_accept_once,
)

CSV_READING_COLUMNS = ("metric", "value", "unit", "measured_at")


@dataclass
class ImportSummary:
    lines: int = 0
    records_published: int = 0
    records_already_imported: int = 0
    messages_published: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)


def _csv_records(handle: io.TextIOBase) -> Iterator[tuple[int, dict | str]]:
    """CSV with a header: device (optional with --device), metric, value, unit, measured_at;
    or event_type, severity, occurred_at, detail (JSON) for events."""
    reader = csv.DictReader(handle)
    for row in reader:
        line = reader.line_num
        record: dict = {key: value for key, value in row.items() if key and value not in (None, "")}
        if "value" in record:
            try:
                record["value"] = float(record["value"])
            except ValueError:
                pass  # the validator names the field
        if "severity" in record:
            record["severity"] = (
                int(record["severity"]) if str(record["severity"]).isdigit() else record["severity"]
            )
        if "detail" in record:
            try:
                record["detail"] = json_parse(record["detail"])
            except ValueError:
                yield line, "detail: not JSON"
                continue
        yield line, record


def _ndjson_records(handle: io.TextIOBase) -> Iterator[tuple[int, dict | str]]:
    for line_number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json_parse(line)
        except ValueError as error:
            yield line_number, f"not JSON: {error}"
            continue
        yield line_number, record if isinstance(record, dict) else "not a JSON object"


def file_open(*, path: Path, file_format: str) -> io.TextIOBase:
    return path.open("r", encoding="utf-8", newline="" if file_format == "csv" else None)


def file_records(*, handle: io.TextIOBase, file_format: str) -> Iterator[tuple[int, dict | str]]:
    """``(line number, record)`` for each line, or ``(line number, why it is not a record)``."""
    parse = _csv_records if file_format == "csv" else _ndjson_records
    return parse(handle)


def record_check(record: dict, *, now) -> tuple[str, dict | None, dict | None]:
    """``(kind, valid record, errors)`` by the API's own rules; kind is "reading" or "event"."""
    if "event_type" in record:
        split = device_records_split({"events": [record]})
        valid = split.events[0] if split.events else None
        return "event", valid, (split.rejections[0]["errors"] if split.rejections else None)
    # The API's own check, called directly: readings are most of a large file.
    valid, errors = reading_validate(record, window=InstantWindow.at(now))
    return "reading", valid, errors


def errors_text(errors: dict) -> str:
    return "; ".join(f"{name}: {' '.join(map(str, messages))}" for name, messages in errors.items())


class _Devices:
    def __init__(self, default_serial: str | None) -> None:
        self.default_serial = default_serial
        self.by_serial: dict[str, Device | None] = {}

    def of(self, record: dict) -> tuple[Device | None, str]:
        serial = record.pop("device", None) or self.default_serial
        if not serial:
            return None, "no device: give a 'device' column or --device"
        if serial not in self.by_serial:
            self.by_serial[serial] = Device.objects.filter(serial_no=serial).first()
        device = self.by_serial[serial]
        if device is None:
            return None, f"unknown device {serial}"
        if device.status != DeviceStatus.ACTIVE:
            return None, f"device {serial} is {device.status}"
        return device, ""


class _Publisher:
    """Full chunks wait here until a group is ready, then go out together (one ledger query)."""

    def __init__(self, summary: ImportSummary) -> None:
        self.summary = summary
        self.ready: list[RecordsChunk] = []

    def add(self, chunk: RecordsChunk) -> None:
        self.ready.append(chunk)
        if len(self.ready) >= CHUNKS_PER_GROUP:
            self.flush()

    def flush(self) -> None:
        # Confirmed, or ApplicationError (503): the import stops and can simply be re-run.
        accepted = records_chunks_accept_once(chunks=self.ready)
        self.ready = []
        self.summary.records_published += accepted.records_published
        self.summary.messages_published += accepted.messages_published
        self.summary.records_already_imported += accepted.records_already_processed


def file_import(
    *,
    path: Path,
    file_format: str,
    device_serial: str | None = None,
    chunk_size: int = 1000,
    progress: Callable[[int, int, int], None] | None = None,
) -> ImportSummary:
    """Stream the file into the pipeline; return what happened (bad lines with their numbers).

    ``progress(bytes_read, total_bytes, lines)`` is called every 1,000 lines and at the end.
    """
    summary = ImportSummary()
    publisher = _Publisher(summary)
    now = timezone.now()  # refreshed every 1,000 lines: the window readings must fall in
    devices = _Devices(device_serial)
    chunks: dict[int, RecordsChunk] = {}
    total_bytes = path.stat().st_size
    with file_open(path=path, file_format=file_format) as handle:
        for line_number, record in file_records(handle=handle, file_format=file_format):
            summary.lines += 1
            if summary.lines % 1000 == 0:
                now = timezone.now()
            if isinstance(record, str):
                summary.bad_lines.append((line_number, record))
                continue
            device, problem = devices.of(record)
            if device is None:
                summary.bad_lines.append((line_number, problem))
                continue
            kind, valid, errors = record_check(record, now=now)
            if errors:
                summary.bad_lines.append((line_number, errors_text(errors)))
                continue
            chunk = chunks.get(device.id)
            if chunk is None:
                chunk = chunks[device.id] = RecordsChunk(
                    device=device, origin=f"import:{device.serial_no}", readings=[], events=[]
                )
            (chunk.events if kind == "event" else chunk.readings).append(valid)
            if chunk.size >= chunk_size:
                publisher.add(chunks.pop(device.id))
            if progress is not None and summary.lines % 1000 == 0:
                progress(handle.buffer.tell() if hasattr(handle, "buffer") else 0, total_bytes, summary.lines)
        for chunk in chunks.values():
            publisher.add(chunk)
        publisher.flush()
    if progress is not None:
        progress(total_bytes, total_bytes, summary.lines)
    return summary
