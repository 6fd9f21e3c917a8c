"""Care journeys in a browser: everything links (lists → resident → device → event), and keys."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from ingest.models import DeviceAPIKey
from ingest.services.devices import device_key_issue
from tests.browser.care_data import care_home
from tests.browser.conftest import log_in
from tests.factories import UserFactory

pytestmark = pytest.mark.usefixtures("committed_db")

OPERATORS = "Console operators"
VIEWERS = "Console viewers"


def test_from_the_alerts_to_the_resident_their_device_and_the_event(live_server, page, screenshot):
    home = care_home()
    UserFactory(username="olivia", role=OPERATORS)
    log_in(page, live_server.url, "olivia")

    page.click("header nav >> text=Alerts")
    page.get_by_role("link", name="Margaret Hale").first.click()

    expect(page.locator("h1")).to_contain_text("Margaret Hale")
    contacts = page.locator("#resident-contacts")
    expect(contacts.get_by_role("link", name="+44 7700 900461")).to_have_attribute(
        "href", "tel:+447700900461"
    )
    expect(contacts.get_by_role("link", name="+44 20 7946 0321")).to_have_attribute(
        "href", "tel:+442079460321"
    )
    expect(page.locator("#resident-alerts")).to_contain_text(
        "Critical event fall_detected from device VIT-0042"
    )
    vitals = page.locator("#resident-vitals")
    expect(vitals).to_contain_text("heart_rate")
    expect(vitals).to_contain_text("68.0 bpm")  # the newest heart rate, not an old one
    expect(vitals).to_contain_text("93.0 %")
    expect(page.locator("#resident-chart")).to_have_count(1)
    expect(page.locator("#resident-devices")).to_contain_text("SOS-0042")
    screenshot(page, "care-resident")

    page.locator("#resident-devices").get_by_role("link", name="VIT-0042").click()
    expect(page.locator("h1")).to_contain_text("VIT-0042")
    expect(page.locator("#device-facts")).to_contain_text("Margaret Hale")
    expect(page.locator("#device-readings tr")).to_have_count(21)
    expect(page.locator("#device-keys")).to_contain_text(home.key_prefix)
    events = page.locator("#device-events tr td:nth-child(2)")
    expect(events).to_have_text(["low_battery", "fall_detected", "low_battery", "low_battery"])
    screenshot(page, "care-device")

    page.locator("#device-events tr", has_text="fall_detected").get_by_role("link").click()
    expect(page.locator("h1")).to_contain_text("fall_detected")
    detail = page.locator("#event-detail").inner_text()
    assert json.loads(detail) == {"confidence": 0.97, "impact_g": 3.1, "room": "bathroom"}
    assert '\n  "room": "bathroom"' in detail  # indented JSON, not a Python dict
    screenshot(page, "care-event")
    page.locator("#event-facts").get_by_role("link", name="Margaret Hale").click()
    expect(page).to_have_url(f"{live_server.url}/console/residents/{home.margaret.pk}/")


def test_record_lists_link_to_devices_and_events_by_when_they_occurred(live_server, page):
    home = care_home()
    UserFactory(username="victor", role=VIEWERS)
    log_in(page, live_server.url, "victor")

    page.click("header nav >> text=Device events")
    first_row = page.locator("main table tr").nth(1)
    expect(first_row).to_contain_text("low_battery")  # 6 h ago: newer than the fall, though created before it
    expect(page.locator("main table")).to_contain_text(
        '{"confidence": 0.97, "impact_g": 3.1, "room": "bathroom"}'
    )
    page.locator("main table tr", has_text="fall_detected").get_by_role("link", name="VIT-0042").click()
    expect(page).to_have_url(f"{live_server.url}/console/devices/{home.watch.pk}/")

    page.click("header nav >> text=Sensor readings")
    page.locator("main table").get_by_role("link", name="VIT-0042").first.click()
    expect(page.locator("h1")).to_contain_text("VIT-0042")


def test_an_operator_issues_copies_and_revokes_keys_and_a_reload_mints_nothing(live_server, page, screenshot):
    home = care_home()
    UserFactory(username="olivia", role=OPERATORS)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    log_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/console/devices/{home.watch.pk}/")

    page.fill("#issue-key-form input[name=name]", "replacement")
    page.click("#issue-key-form button")
    key = page.locator("#issued-key").inner_text().strip()
    assert DeviceAPIKey.objects.get_from_key(key).name == "replacement"
    screenshot(page, "care-key-issued")

    page.click("#copy-key")
    expect(page.locator(".copy-outcome")).to_have_text("Copied.")
    assert page.evaluate("() => navigator.clipboard.readText()") == key

    page.reload()
    expect(page.locator("#key-gone")).to_contain_text("already been shown")
    expect(page.locator("#issued-key")).to_have_count(0)
    assert DeviceAPIKey.objects.filter(device=home.watch, revoked=False).count() == 2  # factory key + one

    page.click("text=back to VIT-0042")
    new_prefix = key.partition(".")[0]
    page.locator(f"#device-keys tr[data-key-prefix='{home.key_prefix}'] button:has-text('Revoke')").click()
    expect(page.locator(".messages")).to_contain_text(f"Revoked key {home.key_prefix} of VIT-0042")
    expect(page.locator(f"#device-keys tr[data-key-prefix='{home.key_prefix}']")).to_contain_text("revoked")
    expect(page.locator(f"#device-keys tr[data-key-prefix='{new_prefix}']")).to_contain_text("active")
    assert DeviceAPIKey.objects.is_valid(key)


def test_a_device_page_shows_refused_requests_and_when_each_key_was_last_used(live_server, page, screenshot):
    import requests

    home = care_home()
    _, key = device_key_issue(device=home.sos_button, name="button key")
    UserFactory(username="victor", role=VIEWERS)
    reading = {"metric": "battery", "value": 80, "unit": "%", "measured_at": timezone.now().isoformat()}
    DeviceAPIKey.objects.filter(device=home.sos_button).update(revoked=True)
    refused = requests.post(
        f"{live_server.url}/api/v1/ingest/",
        json={"readings": [reading]},
        headers={"Authorization": f"Api-Key {key}"},
        timeout=10,
    )
    assert refused.status_code == 401
    DeviceAPIKey.objects.filter(device=home.watch).update(last_used_at=timezone.now())

    log_in(page, live_server.url, "victor")
    page.goto(f"{live_server.url}/console/devices/{home.sos_button.pk}/")
    refusals = page.locator("#device-refusals")
    expect(refusals).to_contain_text("401")
    expect(refusals).to_contain_text("Unknown or revoked device key.")
    expect(refusals).to_contain_text(key.partition(".")[0])
    screenshot(page, "care-device-refusals")

    page.goto(f"{live_server.url}/console/devices/{home.watch.pk}/")
    last_used = page.locator(f"#device-keys tr[data-key-prefix='{home.key_prefix}'] td:nth-child(4)")
    expect(last_used).not_to_have_text("never")


def test_a_viewer_has_no_key_actions_and_is_refused_when_posting(live_server, page):
    home = care_home()
    UserFactory(username="victor", role=VIEWERS)
    log_in(page, live_server.url, "victor")
    page.goto(f"{live_server.url}/console/devices/{home.watch.pk}/")
    expect(page.locator("#issue-key-form")).to_have_count(0)
    expect(page.locator("#device-keys button")).to_have_count(0)

    statuses = page.evaluate(
        """async (urls) => {
            const token = document.cookie.split('; ').find(c => c.startsWith('csrftoken=')).split('=')[1];
            const results = [];
            for (const url of urls) {
                const response = await fetch(url, {method: 'POST', headers: {'X-CSRFToken': token}});
                results.push(response.status);
            }
            return results;
        }""",
        [
            f"{live_server.url}/console/devices/{home.watch.pk}/keys/issue/",
            f"{live_server.url}/console/devices/{home.watch.pk}/keys/{home.key_prefix}/revoke/",
        ],
    )
    assert statuses == [403, 403]
    assert DeviceAPIKey.objects.filter(device=home.watch, revoked=False).count() == 1


def test_an_unknown_device_is_a_not_found_page(live_server, page):
    UserFactory(username="victor", role=VIEWERS)
    log_in(page, live_server.url, "victor")
    response = page.goto(f"{live_server.url}/console/devices/987654/")
    assert response.status == 404
    expect(page.locator("main")).to_contain_text("not found", ignore_case=True)


def test_a_refused_copy_tells_the_operator_to_copy_by_hand(live_server, page):
    home = care_home()
    UserFactory(username="olivia", role=OPERATORS)
    # As when the browser refuses the clipboard (permission denied, page not focused).
    page.add_init_script("navigator.clipboard.writeText = () => Promise.reject(new Error('denied'));")
    log_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/console/devices/{home.watch.pk}/")
    page.click("#issue-key-form button")
    page.click("#copy-key")
    expect(page.locator(".copy-outcome")).to_have_text("Could not copy: select the key and copy it by hand.")
    expect(page.locator("#issued-key")).to_be_visible()
