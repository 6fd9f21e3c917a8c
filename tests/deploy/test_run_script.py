"""deploy/run.sh tells the person who started it where the console, gRPC and MQTT are."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

RUN_SCRIPT = Path(settings.BASE_DIR) / "deploy" / "run.sh"


def _script_line(pattern: str) -> re.Match:
    match = re.search(pattern, RUN_SCRIPT.read_text(), flags=re.MULTILINE)
    assert match, f"deploy/run.sh has no line matching {pattern!r}"
    return match


def test_the_printed_console_address_is_the_console_not_the_admin():
    line = _script_line(r"^Console: +(\S+)").group(1)
    assert line == "http://127.0.0.1:$port$console_path"


@pytest.mark.django_db
def test_the_path_run_sh_asks_for_is_where_the_console_answers():
    command = _script_line(r"^console_path=\$\((.+)\)$").group(1)

    path = subprocess.run(
        ["bash", "-c", command], cwd=settings.BASE_DIR, capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()

    assert path == "/console/"
    answer = Client().get(path)
    assert answer.status_code == 302 and answer["Location"].startswith("/console/login/")


def _addresses_printed(env_file: str, tmp_path: Path, **environment: str) -> str:
    """The gRPC and MQTT lines run.sh prints, for a checkout whose .env holds ``env_file``."""
    text = RUN_SCRIPT.read_text()
    function = _script_line(r"^setting\(\) \{\n(?:.*\n)*?\}$").group(0)
    lines = re.search(r"^grpc_host=(?:.*\n)*?^esac$", text, flags=re.MULTILINE)
    assert lines, "deploy/run.sh computes no gRPC and MQTT lines"
    (tmp_path / ".env").write_text(env_file)
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("GRPC_", "MQTT_"))}
    return subprocess.run(
        [
            "bash",
            "-euo",
            "pipefail",
            "-c",
            f'{function}\n{lines.group(0)}\nprintf "%s" "$grpc_line$mqtt_line"',
        ],
        cwd=tmp_path,
        env={**clean, **environment},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout


def test_run_sh_prints_where_serve_grpc_and_the_mqtt_listener_are(tmp_path):
    printed = _addresses_printed("WEB_PORT=8000\n", tmp_path)

    assert f"gRPC:     {settings.GRPC_BIND}:{settings.GRPC_PORT}," in printed
    # Unset, MQTT is on (setup configured the broker); its port is setup's default.
    assert re.search(r"^MQTT: +127\.0\.0\.1:1883,", printed, flags=re.MULTILINE)


def test_run_sh_prints_the_ports_env_holds_and_no_mqtt_when_it_is_off(tmp_path):
    printed = _addresses_printed("GRPC_PORT=50999\nMQTT_PORT=1884\n", tmp_path)
    assert "gRPC:     127.0.0.1:50999," in printed and "MQTT:     127.0.0.1:1884," in printed

    off = _addresses_printed("MQTT_ENABLED=false\n", tmp_path, MQTT_ENABLED="true")
    # honcho gives the processes .env's value over the caller's: the worker runs no bridge.
    assert "gRPC:" in off and "MQTT:" not in off


def test_the_procfile_starts_serve_grpc_and_the_worker_the_bridge_runs_in():
    procfile = (Path(settings.BASE_DIR) / "deploy" / "Procfile").read_text()
    assert re.search(r"^grpc: .*manage\.py serve_grpc$", procfile, flags=re.MULTILINE)
    assert re.search(r"^worker: .*manage\.py consume_queue$", procfile, flags=re.MULTILINE)
