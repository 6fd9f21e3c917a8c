"""Playwright driving Debian's Chromium (never a downloaded browser) against live_server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Test runs write under reports/ (untracked); deploy/screenshots.sh points this at
# docs/screenshots/ to refresh the README's pictures on purpose.
SCREENSHOTS = Path(os.environ.get("SCREENSHOTS_DIR") or Path(settings.BASE_DIR) / "reports" / "screenshots")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium():
    """One browser per module. While Playwright's sync API runs, an event loop runs in this
    thread, and Django's ORM refuses to work there unless told the caller knows: the
    permission lasts exactly as long as the browser, so later tests and the processes they
    start never inherit it."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: deploy/test.sh installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


# Reports every Content-Security-Policy violation of every document the page loads to Python
# (an init script is not itself subject to the page's policy).
_REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportPolicyViolation(`${event.violatedDirective} blocked ${event.blockedURI || "inline"} on ${event.documentURI}`);
});
"""


@pytest.fixture
def policy_violations() -> list[str]:
    """CSP violations seen by the browser during the test (the page fixture fails on any)."""
    return []


@pytest.fixture
def page(chromium, policy_violations):
    context = chromium.new_context(viewport={"width": 1360, "height": 900})
    context.expose_binding("reportPolicyViolation", lambda source, text: policy_violations.append(text))
    context.add_init_script(_REPORT_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("dialog", lambda dialog: dialog.accept())
    page.on(
        "console",
        lambda message: (
            policy_violations.append(f"console: {message.text}")
            if "Content Security Policy" in message.text or "Permissions policy" in message.text
            else None
        ),
    )
    yield page
    context.close()
    assert policy_violations == [], "the console broke its own Content-Security-Policy"


@pytest.fixture
def screenshot():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    return take


def log_in(page, base_url: str, username: str, password: str = "console-pw-1") -> None:
    page.goto(f"{base_url}/console/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/console/")
