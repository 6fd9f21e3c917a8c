"""The console's frame in a real browser: one time policy, live refresh, phone and keyboard.

The browser runs in New York, so "browser time" and UTC differ on every page.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import _REPORT_VIOLATIONS, log_in
from tests.factories import AlertFactory, DeadLetterFactory, DeviceFactory, SensorReadingFactory, UserFactory

pytestmark = pytest.mark.usefixtures("committed_db")

OPERATORS = "Console operators"
NEW_YORK = "America/New_York"
FAILED_AT = datetime(2026, 11, 24, 14, 3, 7, tzinfo=UTC)  # 09:03:07 in New York
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1360, "height": 900}


def _context_page(chromium, policy_violations, *, viewport=DESKTOP):
    context = chromium.new_context(viewport=viewport, timezone_id=NEW_YORK, locale="en-US")
    context.expose_binding("reportPolicyViolation", lambda source, text: policy_violations.append(text))
    context.add_init_script(_REPORT_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("dialog", lambda dialog: dialog.accept())
    return context, page


@pytest.fixture
def new_york_page(chromium, policy_violations):
    context, page = _context_page(chromium, policy_violations)
    yield page
    context.close()
    assert policy_violations == [], "the console broke its own Content-Security-Policy"


@pytest.fixture
def phone_page(chromium, policy_violations):
    context, page = _context_page(chromium, policy_violations, viewport=PHONE)
    yield page
    context.close()
    assert policy_violations == [], "the console broke its own Content-Security-Policy"


@pytest.fixture
def olivia(db):
    return UserFactory(username="olivia", role=OPERATORS)


def _wait_for_refresh(page, selector: str = "#overview-panel") -> None:
    """Until the live panel has been refreshed once more than it had been.

    Read as an attribute on both sides: before the first refresh it is null here, and
    ``dataset`` would give undefined, never equal to null, ending the wait at once.
    """
    before = page.get_attribute(selector, "data-refreshed-at")
    page.wait_for_function(
        "([selector, before]) => document.querySelector(selector).getAttribute('data-refreshed-at') !== before",
        arg=[selector, before],
        timeout=12_000,
    )


# --- One time policy -----------------------------------------------------------------------


def test_the_toggle_switches_every_time_between_browser_time_and_utc(
    live_server, new_york_page, olivia, screenshot
):
    page = new_york_page
    DeadLetterFactory(last_failed_at=FAILED_AT, error_class="TimeShown")

    log_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/console/failed/")
    toggle = page.locator("[data-time-toggle]")

    # Browser time by default: New York, named next to the times and on the filter.
    expect(page.locator("table")).to_contain_text("2026-11-24 09:03:07 EST")
    expect(toggle).to_contain_text(f"Times in {NEW_YORK}")
    expect(toggle).to_contain_text("show UTC")
    expect(page.locator("form.filters")).to_contain_text(f"Failed from {NEW_YORK}")
    screenshot(page, "time-browser-zone")

    toggle.click()
    expect(page.locator("table")).to_contain_text("2026-11-24 14:03:07 UTC")
    expect(page.locator("table")).not_to_contain_text("EST")
    expect(toggle).to_contain_text("Times in UTC")
    expect(toggle).to_contain_text("show browser time")
    expect(page.locator("form.filters")).to_contain_text("Failed from UTC")
    time_element = page.locator("table time[data-console-time]").first
    expect(time_element).to_have_attribute("datetime", "2026-11-24T14:03:07Z")

    # The choice is kept from page to page until switched back.
    page.goto(f"{live_server.url}/console/failed/groups/?status=")
    expect(page.locator("table")).to_contain_text("14:03:07 UTC")
    page.locator("[data-time-toggle]").click()
    expect(page.locator("table")).to_contain_text("09:03:07 EST")


def test_a_since_filter_is_read_in_the_zone_shown(live_server, new_york_page, olivia, screenshot):
    page = new_york_page
    DeadLetterFactory(error_class="EarlyFailure", last_failed_at=FAILED_AT.replace(hour=10))  # 05:00 EST
    DeadLetterFactory(error_class="LateFailure", last_failed_at=FAILED_AT.replace(hour=15))  # 10:00 EST

    log_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/console/failed/")
    page.fill("input[name=since]", "2026-11-24T09:00")
    page.click("form.filters button[type=submit]")

    # 09:00 as the operator sees it, New York: only the failure at 10:00 EST.
    expect(page.locator("table")).to_contain_text("LateFailure")
    expect(page.locator("table")).not_to_contain_text("EarlyFailure")
    expect(page.locator("form.filters input[name=since]")).to_have_value("2026-11-24T09:00")
    screenshot(page, "filter-in-zone")

    # The same filter read in UTC: 09:00 UTC is before both.
    page.locator("[data-time-toggle]").click()
    expect(page.locator("table")).to_contain_text("EarlyFailure")
    expect(page.locator("table")).to_contain_text("LateFailure")


def test_a_zone_the_server_does_not_know_shows_utc_and_says_so(live_server, new_york_page, olivia):
    page = new_york_page
    DeadLetterFactory(last_failed_at=FAILED_AT)
    log_in(page, live_server.url, "olivia")
    page.context.add_cookies([{"name": "console_tz", "value": "Mars/Olympus_Mons", "url": live_server.url}])

    page.goto(f"{live_server.url}/console/failed/")

    expect(page.locator("#zone-problem")).to_contain_text("Unknown time zone 'Mars/Olympus_Mons'")
    expect(page.locator("table")).to_contain_text("2026-11-24 14:03:07 UTC")
    expect(page.locator("[data-time-toggle]")).to_contain_text("Times in UTC")
    # The page put the browser's own zone back: the next page is in browser time again.
    page.reload()
    expect(page.locator("#zone-problem")).to_have_count(0)
    expect(page.locator("table")).to_contain_text("09:03:07 EST")


def test_a_page_written_before_the_browser_chose_its_zone_is_rewritten_in_it(
    live_server, new_york_page, olivia
):
    """No zone cookie yet (a first visit): the server writes UTC, the page shows browser time."""
    page = new_york_page
    DeadLetterFactory(last_failed_at=FAILED_AT)
    log_in(page, live_server.url, "olivia")
    page.context.clear_cookies(name="console_tz")

    page.goto(f"{live_server.url}/console/failed/")

    expect(page.locator("table time[data-console-time]")).to_have_text("2026-11-24 09:03:07 EST")
    expect(page.locator("[data-time-toggle] [data-zone-name]")).to_have_text(NEW_YORK)
    cookies = {cookie["name"]: cookie["value"] for cookie in page.context.cookies()}
    assert cookies["console_tz"] == NEW_YORK


def test_recency_reads_as_an_age_that_keeps_itself_current(live_server, new_york_page, olivia):
    page = new_york_page
    seen = timezone.now() - timedelta(minutes=3, seconds=10)
    DeviceFactory(serial_no="AGE-0001", last_seen_at=seen)
    AlertFactory(message="Critical event fall_detected from device AGE-0001", created_at=seen)

    log_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/console/records/devices/")
    age = page.locator("table time[data-console-age]").first
    expect(age).to_have_text("3 min ago")
    expect(age).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d E[SD]T$"))

    page.goto(f"{live_server.url}/console/alerts/")
    expect(page.locator("#open-alerts time[data-console-age]")).to_have_text("3 min ago")
    # console.js rewrites ages as time passes, in the server's words.
    page.evaluate(
        "() => document.querySelectorAll('time[data-console-age]').forEach(t => t.setAttribute("
        "'datetime', new Date(Date.now() - 7200 * 1000).toISOString()))"
    )
    page.evaluate("() => window.iotConsole.refreshAges()")
    expect(page.locator("#open-alerts time[data-console-age]")).to_have_text("2 h ago")


# --- Live refresh --------------------------------------------------------------------------


def test_an_expired_session_says_so_instead_of_showing_the_login_page(
    live_server, new_york_page, olivia, screenshot
):
    page = new_york_page
    log_in(page, live_server.url, "olivia")
    panel = page.locator("#overview-panel")
    expect(panel).to_have_attribute("aria-live", "polite")

    Session.objects.all().delete()  # the session ends on the server (idle timeout, logout elsewhere)

    notice = page.locator("#session-expired")
    expect(notice).to_have_text(re.compile(r"^Session expired — sign in again\."), timeout=12_000)
    expect(notice).to_have_attribute("role", "alert")
    expect(notice.locator("a")).to_have_attribute("href", "/console/login/?next=%2Fconsole%2F")
    expect(panel.locator("input[name=password]")).to_have_count(0)
    expect(panel).not_to_contain_text("Log in")
    expect(page.locator("#overview-panel-updated")).to_contain_text("Not updated since")
    screenshot(page, "session-expired")

    notice.locator("a").click()
    expect(page.locator("form.login")).to_be_visible()
    page.fill("input[name=username]", "olivia")
    page.fill("input[name=password]", "console-pw-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/console/")


def test_a_refresh_keeps_focus_and_says_how_fresh_the_panel_is(live_server, new_york_page, olivia):
    page = new_york_page
    AlertFactory(message="one open alert")
    log_in(page, live_server.url, "olivia")

    link = page.locator("#overview-panel a[href='/console/alerts/']")
    link.focus()
    page.evaluate("() => { window.focusedBefore = document.activeElement; }")
    _wait_for_refresh(page)
    _wait_for_refresh(page)

    # The very element the operator was on is still there and still focused.
    assert page.evaluate(
        "() => document.activeElement === window.focusedBefore && window.focusedBefore.isConnected"
    )
    expect(page.locator("#overview-panel")).to_have_attribute("aria-live", "polite")
    expect(page.locator("#overview-panel-updated")).to_have_text(re.compile(r"^Updated \d+ s ago\.$"))


def test_a_failing_refresh_keeps_the_panel_and_says_how_old_it_is(live_server, new_york_page, olivia):
    page = new_york_page
    log_in(page, live_server.url, "olivia")
    page.route("**/console/overview/panel/**", lambda route: route.fulfill(status=502, body="bad gateway"))

    status = page.locator("#overview-panel-updated")
    expect(status).to_contain_text("Refresh failed (HTTP 502).", timeout=12_000)
    expect(status).to_contain_text("Showing what was fetched")
    expect(page.locator("#overview-panel")).to_contain_text("Consumers on the main queue")
    expect(page.locator("#overview-panel")).not_to_contain_text("bad gateway")


def test_a_panel_that_says_it_is_finished_stops_refreshing(live_server, new_york_page, olivia):
    page = new_york_page
    log_in(page, live_server.url, "olivia")
    fetched = []

    def finished(route):
        fetched.append(route.request.url)
        route.fulfill(status=200, body='<p id="finished" data-refresh-done>Job done.</p>')

    page.route("**/console/overview/panel/**", finished)
    expect(page.locator("#finished")).to_have_text("Job done.", timeout=12_000)
    expect(page.locator("#overview-panel-updated")).to_have_text("Finished: no longer updated.")
    page.wait_for_timeout(6_000)
    assert len(fetched) == 1


def test_a_refresh_that_is_redirected_is_never_followed_into_the_panel(live_server, new_york_page, olivia):
    """A proxy or older server answering with a redirect to a login page: still "expired"."""
    page = new_york_page
    log_in(page, live_server.url, "olivia")
    page.route(
        "**/console/overview/panel/**",
        lambda route: route.fulfill(status=302, headers={"Location": "/console/login/?next=/console/"}),
    )
    expect(page.locator("#session-expired")).to_contain_text("Session expired", timeout=12_000)
    expect(page.locator("#overview-panel input[name=password]")).to_have_count(0)


# --- Keyboard and small screens ------------------------------------------------------------


def test_the_skip_link_is_the_first_stop_and_jumps_to_the_content(live_server, new_york_page, olivia):
    page = new_york_page
    log_in(page, live_server.url, "olivia")

    page.keyboard.press("Tab")
    focused = page.evaluate(
        "() => [document.activeElement.textContent, document.activeElement.getAttribute('href')]"
    )
    assert focused == ["Skip to content", "#content"]
    expect(page.locator(".skip-link")).to_be_in_viewport()

    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "content"
    page.keyboard.press("Tab")  # the next stop is inside the page's content, past the navigation
    assert page.evaluate("() => document.getElementById('content').contains(document.activeElement)")


def test_the_navigation_is_grouped(live_server, new_york_page, olivia, screenshot):
    page = new_york_page
    log_in(page, live_server.url, "olivia")
    nav = page.locator("#console-nav")
    expect(nav.locator(".nav-group-title")).to_have_text(["Pipeline", "Care", "Admin"])
    expect(nav.locator("ul[aria-labelledby=nav-pipeline]")).to_contain_text("Failed messages")
    expect(nav.locator("ul[aria-labelledby=nav-care]")).to_contain_text("Alerts")
    expect(nav.locator("ul[aria-labelledby=nav-admin]")).to_contain_text("Audit")
    expect(nav.locator("a[aria-current=page]")).to_have_text("Overview")
    expect(page.locator("[data-nav-toggle]")).to_be_hidden()  # a desktop shows it all
    screenshot(page, "overview-desktop")


def _page_fits(page) -> None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{page.url} is {widths[0]} px wide in a {widths[1]} px window"


def test_on_a_phone_the_menu_folds_and_no_page_scrolls_sideways(live_server, phone_page, olivia, screenshot):
    page = phone_page
    device = DeviceFactory(serial_no="PHONE-0001", last_seen_at=timezone.now())
    SensorReadingFactory.create_batch(3, device=device)
    alert = AlertFactory(device=device, message="Critical event fall_detected from device PHONE-0001 " * 3)
    dead = DeadLetterFactory(error_message="x" * 400)
    log_in(page, live_server.url, "olivia")

    toggle = page.locator("[data-nav-toggle]")
    nav = page.locator("#console-nav")
    expect(toggle).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(nav).to_be_hidden()
    _page_fits(page)
    screenshot(page, "overview-phone")

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(nav).to_be_visible()
    expect(nav.locator(".nav-group-title")).to_have_text(["Pipeline", "Care", "Admin"])
    screenshot(page, "menu-phone")
    page.keyboard.press("Escape")  # folds it again, the keyboard back on the button
    expect(nav).to_be_hidden()
    expect(toggle).to_be_focused()
    toggle.press("Enter")
    expect(nav).to_be_visible()
    nav.locator("a", has_text="Failed messages").click()
    expect(page.locator("h1")).to_have_text("Failed messages")
    expect(page.locator("#console-nav")).to_be_hidden()  # folded again on the next page

    for path in [
        "/console/failed/?status=dead",
        f"/console/failed/{dead.pk}/",
        "/console/failed/groups/",
        "/console/jobs/",
        "/console/scheduler/",
        "/console/audit/",
        "/console/alerts/",
        f"/console/alerts/{alert.pk}/",
        "/console/records/devices/",
        f"/console/records/devices/{device.pk}/",
        "/console/records/readings/",
        "/console/records/residents/",
    ]:
        page.goto(f"{live_server.url}{path}")
        expect(page.locator("h1")).to_be_visible()
        _page_fits(page)
    page.goto(f"{live_server.url}/console/failed/?status=dead")
    # The table scrolls inside itself: its own width may exceed the window's, the page's not.
    assert page.evaluate("() => document.querySelector('main table').scrollWidth") > PHONE["width"] - 24
    screenshot(page, "failed-messages-phone")
