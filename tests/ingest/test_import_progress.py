"""import_file's progress: a redrawn bar on a terminal, a few plain lines anywhere else."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from ingest.management.progress import ProgressReport
from tests.factories import DeviceFactory
from tests.workers import PROJECT_ROOT, worker_environment


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_output_is_a_line_every_tenth_or_five_seconds_never_a_carriage_return():
    stream, clock = io.StringIO(), _Clock()
    report = ProgressReport(stream, unit="lines", is_terminal=False, clock=clock)
    for step in range(1, 1001):  # 1,000 updates over 20 s, 0.1 % each
        clock.now = step * 0.02
        report.update(step, 1000, step * 10)
    report.finish()

    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert 10 <= len(lines) <= 14, lines  # every 10 %, plus none extra in 20 s
    assert lines[-1].startswith("100%") and "10,000 lines" in lines[-1] and "done in" in lines[-1]
    assert "lines/s" in lines[0] and "ETA" in lines[0]


def test_plain_output_of_a_slow_import_still_reports_every_five_seconds():
    stream, clock = io.StringIO(), _Clock()
    report = ProgressReport(stream, unit="lines", is_terminal=False, clock=clock)
    for second in range(1, 31):
        clock.now = second
        report.update(second, 1000, second)  # 0.1 % a second: the 10 % step never comes

    assert len(stream.getvalue().splitlines()) == 6


def test_terminal_output_redraws_one_line_at_most_ten_times_a_second():
    stream, clock = io.StringIO(), _Clock()
    report = ProgressReport(stream, unit="lines", is_terminal=True, clock=clock)
    for step in range(1, 1001):
        clock.now = step * 0.01  # 10 s
        report.update(step, 1000, step)
    report.finish()

    frames = stream.getvalue().split("\r")[1:]
    assert 95 <= len(frames) <= 102
    assert stream.getvalue().endswith("\n") and stream.getvalue().count("\n") == 1
    assert "ETA" in frames[10] and "lines/s" in frames[10] and "█" in frames[-1]


@pytest.mark.usefixtures("committed_db")
def test_import_file_on_a_terminal_draws_a_bar_and_in_a_log_writes_plain_lines(tmp_path, ingest_queue):
    DeviceFactory(serial_no="VIT-PTY")
    now = timezone.now()
    path = tmp_path / "readings.ndjson"
    path.write_text(
        "".join(
            json.dumps(
                {"metric": "heart_rate", "value": 70, "measured_at": (now - timedelta(seconds=n)).isoformat()}
            )
            + "\n"
            for n in range(3000)
        )
    )
    command = [
        sys.executable,
        "manage.py",
        "import_file",
        str(path),
        "--format",
        "ndjson",
        "--device",
        "VIT-PTY",
    ]

    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=worker_environment(ingest_queue),
        stdout=subprocess.PIPE,
        stderr=secondary,
    )
    os.close(secondary)
    terminal = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 60)
        try:
            chunk = os.read(primary, 4096) if ready else b""
        except OSError:  # the other end closed
            chunk = b""
        if not chunk:
            break
        terminal += chunk
    os.close(primary)
    summary = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 0, terminal
    text = terminal.decode()
    assert "\r" in text and "█" in text and "lines/s" in text and "100%" in text
    assert "3000 lines: 3000 records published" in summary

    logged = subprocess.run(
        command, cwd=PROJECT_ROOT, env=worker_environment(ingest_queue), capture_output=True
    )
    log = logged.stderr.decode()
    assert logged.returncode == 0, log
    assert "\r" not in log and "█" not in log
    assert log.splitlines()[-1].startswith("100%"), log
