"""deploy/run.sh tells the person who started it where the console is."""

from __future__ import annotations

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
