"""In the browser: repeated wrong passwords lead to the console's "Login locked" page."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from tests.factories import UserFactory

pytestmark = pytest.mark.usefixtures("committed_db")
REPORTS = Path(settings.BASE_DIR) / "reports" / "screenshots"


def _submit(page, base_url: str, password: str) -> None:
    page.goto(f"{base_url}/console/login/")
    page.fill("input[name=username]", "lena")
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_wrong_passwords_lock_the_login_and_the_page_says_so(live_server, page):
    UserFactory(username="lena")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _submit(page, live_server.url, "wrong")

    _submit(page, live_server.url, "console-pw-1")

    expect(page.locator("#login-locked h1")).to_have_text("Login locked")
    expect(page.locator("#login-locked")).to_contain_text("Try again in 15 minutes")
    assert page.url.endswith("/console/login/")  # not let in
    REPORTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(REPORTS / "login-locked.png"), full_page=True)
