"""import_file: streamed chunks, bad lines reported by number, re-runs change nothing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import CommandError
from django.utils import timezone

from ingest.models import DeviceEvent, SensorReading
from ingest.worker import IngestWorker
from tests.broker import queue_depth
from tests.factories import DeviceFactory
from tests.file_import import an_hour_ago, import_file_run

pytestmark = pytest.mark.usefixtures("committed_db")


def _drain(topology) -> None:
    IngestWorker(topology=topology, batch_max_wait=0.05).run(stop_when_idle=True)


def test_ndjson_good_lines_go_in_bad_ones_are_reported_and_a_rerun_adds_nothing(tmp_path, ingest_queue):
    DeviceFactory(serial_no="VIT-9")
    lines = [
        json.dumps({"metric": "heart_rate", "value": 60 + n, "unit": "bpm", "measured_at": an_hour_ago(n)})
        for n in range(5)
    ]
    lines.insert(2, "{not json")
    lines.insert(5, json.dumps({"metric": "heart_rate", "value": "high", "measured_at": an_hour_ago(99)}))
    lines.append(
        json.dumps({"event_type": "door_opened", "occurred_at": an_hour_ago(7), "detail": {"door": "front"}})
    )
    path = tmp_path / "export.ndjson"
    path.write_text("\n".join(lines) + "\n")

    out, err = import_file_run(path, "--format", "ndjson", "--device", "VIT-9", "--chunk", "2")

    assert "8 lines: 6 records published in 3 messages, 0 already imported, 2 bad lines" in out
    assert "line 3: not JSON" in err and "line 6: value: Must be a JSON number." in err
    assert "100%" in err
    _drain(ingest_queue)
    assert SensorReading.objects.count() == 5 and DeviceEvent.objects.count() == 1

    out, _ = import_file_run(path, "--format", "ndjson", "--device", "VIT-9", "--chunk", "2")

    assert "0 records published in 0 messages, 6 already imported" in out
    assert queue_depth(ingest_queue.queue) == 0
    assert SensorReading.objects.count() == 5 and DeviceEvent.objects.count() == 1


def test_csv_with_a_device_column_and_unknown_devices_reported(tmp_path, ingest_queue):
    DeviceFactory(serial_no="A-1")
    DeviceFactory(serial_no="B-2", status="retired")
    path = tmp_path / "readings.csv"
    path.write_text(
        "device,metric,value,unit,measured_at\n"
        f"A-1,heart_rate,61,bpm,{an_hour_ago(1)}\n"
        f"A-1,spo2,97,%,{an_hour_ago(2)}\n"
        f"NOPE,heart_rate,61,bpm,{an_hour_ago(3)}\n"
        f"B-2,heart_rate,61,bpm,{an_hour_ago(4)}\n"
        f"A-1,heart_rate,,bpm,{an_hour_ago(5)}\n"
    )
    out, err = import_file_run(path, "--format", "csv")
    assert "5 lines: 2 records published in 1 messages, 0 already imported, 3 bad lines" in out
    assert "line 4: unknown device NOPE" in err
    assert "line 5: device B-2 is retired" in err
    assert "line 6: value: This field is required." in err
    _drain(ingest_queue)
    assert sorted(SensorReading.objects.values_list("metric", flat=True)) == ["heart_rate", "spo2"]


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        import_file_run(tmp_path / "nothing.csv", "--format", "csv")


def test_broker_down_stops_the_import_and_says_a_rerun_is_safe(tmp_path, ingest_queue, settings):
    from ingest.broker.publisher import publisher_reset

    DeviceFactory(serial_no="VIT-1")
    path = tmp_path / "one.ndjson"
    path.write_text(json.dumps({"metric": "hr", "value": 1, "measured_at": an_hour_ago(1)}) + "\n")
    port = settings.RABBITMQ_PORT
    settings.RABBITMQ_PORT = 1
    publisher_reset()
    try:
        with pytest.raises(CommandError, match="re-run the same file"):
            import_file_run(path, "--format", "ndjson", "--device", "VIT-1")
    finally:
        settings.RABBITMQ_PORT = port
        publisher_reset()
    out, _ = import_file_run(path, "--format", "ndjson", "--device", "VIT-1")
    assert "1 records published" in out


def test_the_clock_readings_are_checked_against_moves_on_whatever_the_lines_are(
    tmp_path, ingest_queue, settings, monkeypatch
):
    # Regression: the clock was refreshed only when line 1, 1001, 2001 ... was a valid
    # reading. A file whose every thousandth line was an event kept the start time for
    # good, and a long import refused its newer readings as "in the future".
    from types import SimpleNamespace

    from ingest.services import file_import as file_import_module

    settings.INGEST_MAX_CLOCK_SKEW_SECONDS = 60
    started = timezone.now()
    calls = []

    def clock():  # the import's clock: its start, then an hour later
        calls.append(None)
        return started if len(calls) == 1 else started + timedelta(hours=1)

    monkeypatch.setattr(file_import_module, "timezone", SimpleNamespace(now=clock))
    device = DeviceFactory(serial_no="VIT-CLOCK")
    lines = []
    for number in range(1, 2001):
        if number % 1000 == 1:
            lines.append(json.dumps({"event_type": "door_opened", "occurred_at": an_hour_ago(number)}))
        else:
            # Past the first 1,000 lines the readings are newer than the import's start.
            measured = started + timedelta(minutes=30) if number > 1000 else started - timedelta(hours=1)
            lines.append(
                json.dumps(
                    {
                        "metric": "heart_rate",
                        "value": number,
                        "measured_at": (measured - timedelta(seconds=number)).isoformat(),
                    }
                )
            )
    path = tmp_path / "long.ndjson"
    path.write_text("\n".join(lines) + "\n")

    summary = file_import_module.file_import(path=path, file_format="ndjson", device_serial=device.serial_no)

    assert summary.bad_lines == []
    assert summary.records_published == 2000
