"""Running ``import_file`` from tests, on timestamps inside the API's accepted window."""

from __future__ import annotations

import io
from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone


def an_hour_ago(seconds: int) -> str:
    """An ISO instant ``seconds`` before an hour ago: recent enough, and distinct per line."""
    return (timezone.now() - timedelta(hours=1, seconds=seconds)).isoformat()


def import_file_run(path, *args) -> tuple[str, str]:
    """``manage.py import_file`` in this process: its stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    call_command("import_file", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()
