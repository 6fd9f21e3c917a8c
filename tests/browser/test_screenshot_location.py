"""Test runs write screenshots under reports/ (git-ignored), never into tracked docs/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings

from tests.browser.conftest import SCREENSHOTS


@pytest.mark.skipif(bool(os.environ.get("SCREENSHOTS_DIR")), reason="deploy/screenshots.sh chose the folder")
def test_screenshots_of_a_test_run_go_under_reports():
    assert SCREENSHOTS == Path(settings.BASE_DIR) / "reports" / "screenshots"
    assert "reports/" in (Path(settings.BASE_DIR) / ".gitignore").read_text().split()
