"""Charts in a real browser: readings of a resident or device, the overview's rates, failure trends.

Each test asserts what is drawn (points in the uPlot instance, coloured pixels on the
canvas, the tooltip and legend on hover) and what is written (min/max/average equal to
SQL's), and the page fixture fails on any Content-Security-Policy violation.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import connection
from django.utils import timezone
from playwright.sync_api import expect

from ingest.models import DeadLetter, IngestMessage, SensorReading
from tests.browser.conftest import log_in
from tests.factories import DeadLetterFactory, DeviceFactory, ResidentFactory, UserFactory

pytestmark = pytest.mark.usefixtures("committed_db")

VIEWERS = "Console viewers"
# The chart's colour for the first series (charts.js COLOURS[0], #0f6e6e).
SERIES_RGB = (15, 110, 110)

_SERIES_PIXELS = """
([canvas, rgb]) => {
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    if (pixels[i + 3] > 200 && Math.abs(pixels[i] - rgb[0]) < 12 && Math.abs(pixels[i + 1] - rgb[1]) < 12
        && Math.abs(pixels[i + 2] - rgb[2]) < 12) count += 1;
  }
  return count;
}
"""


def _series_pixels(page, chart_selector: str) -> int:
    canvas = page.locator(f"{chart_selector} canvas").first.element_handle()
    return page.evaluate(_SERIES_PIXELS, [canvas, list(SERIES_RGB)])


def _plot_lengths(page, chart_selector: str) -> list[int]:
    """The number of x values and of each series' values in the element's uPlot instance."""
    return page.evaluate(
        "(selector) => consoleCharts.plotOf(document.querySelector(selector)).data.map((column) => column.length)",
        chart_selector,
    )


def _shown(value: float) -> str:
    """A value as charts.js writes it (toFixed(2): an exact half rounds up), no trailing zeros."""
    return str(Decimal(value).quantize(Decimal("0.01"), ROUND_HALF_UP)).rstrip("0").rstrip(".")


def _sql_summary(device_id: int, metric: str, since: datetime, until: datetime) -> tuple[str, str, str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT min(value), max(value), avg(value), count(*) FROM sensor_readings "
            "WHERE device_id = %s AND metric = %s AND measured_at >= %s AND measured_at < %s",
            [device_id, metric, since, until],
        )
        low, high, mean, count = cursor.fetchone()
    return _shown(low), _shown(high), _shown(mean), count


def _vital_signs(device, *, hours: int = 20) -> None:
    """A heart rate every 10 minutes and an SpO2 every 30 over the last ``hours``."""
    now = timezone.now()
    SensorReading.objects.bulk_create(
        [
            SensorReading(
                device=device,
                metric="heart_rate",
                value=62 + (step * 7) % 31 + (step % 3) * 0.25,
                unit="bpm",
                measured_at=now - timedelta(minutes=5 + step * 10),
            )
            for step in range(hours * 6)
        ]
        + [
            SensorReading(
                device=device,
                metric="spo2",
                value=94 + step % 5,
                unit="%",
                measured_at=now - timedelta(minutes=7 + step * 30),
            )
            for step in range(hours * 2)
        ]
    )


def _stats(page, container: str) -> dict[str, str]:
    row = page.locator(f"{container} .chart-stats tbody tr").first
    return {
        name: row.locator(f"[data-stat={name}]").inner_text() for name in ("readings", "min", "max", "avg")
    }


def test_a_device_chart_draws_its_readings_with_min_max_average_and_switches_metric(
    live_server, page, screenshot
):
    UserFactory(username="carla", role=VIEWERS)
    device = DeviceFactory(serial_no="VIT-0042")
    _vital_signs(device)
    log_in(page, live_server.url, "carla")

    page.goto(f"{live_server.url}/console/charts/device/{device.pk}/")
    chart = "#device-chart .reading-chart"
    expect(page.locator(chart)).to_have_attribute("data-chart-state", "drawn")
    expect(page.locator(f"{chart} .chart-status")).to_contain_text("120 heart_rate readings")
    expect(page.locator(f"{chart} select[name=metric] option")).to_have_text(["heart_rate", "spo2"])
    # The last 24 h in 5-minute buckets: ~289 x values, and max, min and average for each.
    lengths = _plot_lengths(page, chart)
    assert len(lengths) == 4 and 288 <= lengths[0] <= 290 and set(lengths) == {lengths[0]}
    assert _series_pixels(page, chart) > 200  # the average line and its band are drawn

    now = timezone.now()
    low, high, mean, count = _sql_summary(device.pk, "heart_rate", now - timedelta(hours=24), now)
    assert _stats(page, chart) == {"readings": str(count), "min": low, "max": high, "avg": mean}
    expect(page.locator(f"{chart} .chart-unit")).to_have_text("(bpm)")

    # Hovering shows the bucket's values in a tooltip and in the legend.
    box = page.locator(f"{chart} .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
    tooltip = page.locator(f"{chart} .chart-tooltip")
    expect(tooltip).to_be_visible()
    expect(tooltip).to_contain_text(re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d"))
    expect(tooltip).to_contain_text("bpm (min ")
    expect(page.locator(f"{chart} .u-legend")).to_contain_text(re.compile(r"\d+(\.\d+)? bpm"))
    screenshot(page, "chart-device")

    page.select_option(f"{chart} select[name=metric]", "spo2")
    expect(page.locator(f"{chart} .chart-status")).to_contain_text("40 spo2 readings")
    low, high, mean, count = _sql_summary(device.pk, "spo2", now - timedelta(hours=24), timezone.now())
    assert _stats(page, chart) == {"readings": str(count), "min": low, "max": high, "avg": mean}
    expect(page.locator(f"{chart} .chart-unit")).to_have_text("(%)")
    assert "metric=spo2" in page.url  # a reload or a shared link shows the same chart

    page.select_option(f"{chart} select[name=window]", "6h")
    expect(page.locator(f"{chart} .chart-status")).to_contain_text("one point per 1 min")
    page.reload()
    expect(page.locator(f"{chart} .chart-status")).to_contain_text("spo2 readings")
    expect(page.locator(f"{chart} select[name=window]")).to_have_value("6h")


def test_a_custom_window_is_read_in_the_zone_shown_and_the_utc_switch_redraws(live_server, page):
    UserFactory(username="carla", role=VIEWERS)
    device = DeviceFactory(serial_no="VIT-0043")
    # 08:00-09:00 in New York on 2026-03-02 is 13:00-14:00 UTC.
    inside = [datetime(2026, 3, 2, 13, minute, tzinfo=UTC) for minute in (5, 25, 45)]
    outside = [datetime(2026, 3, 2, 8, 30, tzinfo=UTC), datetime(2026, 3, 2, 14, 30, tzinfo=UTC)]
    SensorReading.objects.bulk_create(
        SensorReading(device=device, metric="heart_rate", value=70 + index, unit="bpm", measured_at=at)
        for index, at in enumerate(inside + outside)
    )
    page.context.new_cdp_session(page).send(
        "Emulation.setTimezoneOverride", {"timezoneId": "America/New_York"}
    )
    log_in(page, live_server.url, "carla")
    page.goto(f"{live_server.url}/console/charts/device/{device.pk}/")
    chart = "#device-chart .reading-chart"
    expect(page.locator(chart)).to_have_attribute("data-chart-state", "empty")

    page.select_option(f"{chart} select[name=window]", "custom")
    page.fill(f"{chart} input[name=since]", "2026-03-02T08:00")
    page.fill(f"{chart} input[name=until]", "2026-03-02T09:00")
    page.click(f"{chart} button[type=submit]")
    expect(page.locator(f"{chart} .chart-status")).to_contain_text(
        "3 heart_rate readings from 2026-03-02 08:00 to 2026-03-02 09:00"
    )
    expect(page.locator(f"{chart} .chart-zone")).to_have_text("Times in America/New_York.")
    assert _stats(page, chart)["avg"] == "71"

    # The console's zone switch sets one attribute on <html>: every chart follows it.
    page.evaluate("document.documentElement.setAttribute('data-zone', 'UTC')")
    expect(page.locator(f"{chart} .chart-zone")).to_have_text("Times in UTC.")
    expect(page.locator(f"{chart} .chart-status")).to_contain_text(
        "from 2026-03-02 13:00 to 2026-03-02 14:00"
    )
    expect(page.locator(f"{chart} input[name=since]")).to_have_value("2026-03-02T13:00")


def test_a_resident_chart_shows_no_data_for_an_empty_window_not_a_broken_chart(live_server, page, screenshot):
    UserFactory(username="carla", role=VIEWERS)
    resident = ResidentFactory(full_name="Ada Lovelace")
    room = DeviceFactory(resident=resident, serial_no="ENV-0001", device_type="environment")
    SensorReading.objects.create(
        device=room,
        metric="temperature",
        value=21.5,
        unit="C",
        measured_at=timezone.now() - timedelta(hours=9),
    )
    log_in(page, live_server.url, "carla")

    page.goto(f"{live_server.url}/console/charts/resident/{resident.pk}/?metric=temperature&window=6h")
    chart = "#resident-chart .reading-chart"
    expect(page.locator("h1")).to_have_text("Readings of Resident Ada Lovelace")
    expect(page.locator(chart)).to_have_attribute("data-chart-state", "empty")
    expect(page.locator(f"{chart} .chart-status")).to_contain_text("No data: no temperature readings from")
    expect(page.locator(f"{chart} .uplot")).to_have_count(0)
    expect(page.locator(f"{chart} .chart-stats")).to_be_hidden()
    screenshot(page, "chart-resident-empty")

    page.select_option(f"{chart} select[name=window]", "24h")
    expect(page.locator(chart)).to_have_attribute("data-chart-state", "drawn")
    expect(page.locator(f"{chart} .chart-stats tbody tr")).to_have_count(1)
    assert _stats(page, chart) == {"readings": "1", "min": "21.5", "max": "21.5", "avg": "21.5"}

    lonely = ResidentFactory(full_name="Noor Quiet")
    page.goto(f"{live_server.url}/console/charts/resident/{lonely.pk}/")
    expect(page.locator(f"{chart} .chart-status")).to_have_text(
        "No data: Resident Noor Quiet has no readings yet."
    )


def test_a_bad_chart_query_names_the_field_and_an_unknown_device_is_not_found(live_server, page):
    UserFactory(username="carla", role=VIEWERS)
    device = DeviceFactory(serial_no="VIT-0044")
    _vital_signs(device, hours=2)
    log_in(page, live_server.url, "carla")

    response = page.goto(f"{live_server.url}/console/charts/device/{device.pk}/?metric=blood_sugar")
    assert response.status == 400
    expect(page.locator("#filter-errors")).to_contain_text("Metric (metric)")
    expect(page.locator("#filter-errors")).to_contain_text("blood_sugar")
    chart = "#device-chart .reading-chart"
    expect(page.locator(chart)).to_have_attribute("data-chart-state", "drawn")  # the first metric instead

    # A custom window that ends before it starts: the chart says which field, no broken drawing.
    page.select_option(f"{chart} select[name=window]", "custom")
    page.fill(f"{chart} input[name=since]", "2026-03-02T09:00")
    page.fill(f"{chart} input[name=until]", "2026-03-02T08:00")
    page.click(f"{chart} button[type=submit]")
    expect(page.locator(f"{chart} .chart-status")).to_have_attribute("role", "alert")
    expect(page.locator(f"{chart} .chart-status")).to_contain_text(
        "to (until): The end must be after the start."
    )
    expect(page.locator(f"{chart} .uplot")).to_have_count(0)

    response = page.goto(f"{live_server.url}/console/charts/device/99999999/")
    assert response.status == 404


def test_the_overview_rate_charts_have_axes_and_tooltips_and_survive_the_refresh(
    live_server, page, screenshot
):
    UserFactory(username="carla", role=VIEWERS)
    device = DeviceFactory()
    now = timezone.now()
    IngestMessage.objects.bulk_create(
        IngestMessage(
            message_id=uuid.uuid4(),
            kind="device_batch",
            device=device,
            status="processed",
            received_at=now,
            processed_at=now - timedelta(minutes=minute, seconds=second),
            readings=40 + (minute * 7) % 60,
            events=1,
        )
        for minute in range(60)
        for second in range(0, 60, 6 + minute % 5)
    )
    log_in(page, live_server.url, "carla")
    for chart in ("#messages-chart", "#records-chart"):
        expect(page.locator(f"{chart} .uplot")).to_have_count(1)
        # Each chart stays inside its half of the page (no chart widening its column).
        box = page.locator(chart).bounding_box()
        assert box["x"] + box["width"] <= 1360 and 500 < box["width"] < 700, box
        assert _plot_lengths(page, chart)[0] >= 59
        assert _series_pixels(page, chart) > 100
    expect(page.locator("#messages-chart .u-legend")).to_contain_text("messages/min")

    # The health banners above may push the charts below the fold: hover where it is seen.
    page.locator("#records-chart").scroll_into_view_if_needed()
    box = page.locator("#records-chart .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tooltip = page.locator("#records-chart .chart-tooltip")
    expect(tooltip.locator("strong")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d$"))
    expect(tooltip.locator("div")).to_have_text(re.compile(r"^\d+ records/min$"))

    # The live panel refreshes every 5 s and brings this message in the current minute: both
    # charts are drawn again, once each, and the one under the cursor keeps its tooltip.
    drawn = page.locator("#records-chart").get_attribute("data-chart-values")
    IngestMessage.objects.create(
        message_id=uuid.uuid4(),
        kind="device_batch",
        device=device,
        status="processed",
        received_at=timezone.now(),
        processed_at=timezone.now(),
        readings=500,
        events=1,
    )
    expect(page.locator("#records-chart")).not_to_have_attribute("data-chart-values", drawn, timeout=12_000)
    expect(page.locator("#messages-chart .uplot")).to_have_count(1)
    expect(page.locator("#records-chart .uplot")).to_have_count(1)
    assert _series_pixels(page, "#messages-chart") > 100
    expect(tooltip).to_be_visible()
    expect(tooltip.locator("div")).to_have_text(re.compile(r"^\d+ records/min$"))
    # Last: a full-page screenshot resizes the viewport for a moment, which may slide the
    # chart from under the still pointer (uPlot then hides its cursor until the pointer moves).
    screenshot(page, "overview-charts")


def test_each_failure_group_shows_its_trend(live_server, page, screenshot):
    UserFactory(username="carla", role=VIEWERS)
    now = timezone.now()
    burst = DeadLetterFactory.create_batch(6, error_message="unknown schema version 9")
    for index, dead in enumerate(burst):
        dead.last_failed_at = now - timedelta(hours=3 if index < 4 else 1, minutes=5)
    steady = DeadLetterFactory.create_batch(
        3, error_class="django.db.utils.DataError", error_message="value too long"
    )
    for index, dead in enumerate(steady):
        dead.last_failed_at = now - timedelta(hours=index * 5, minutes=5)
    DeadLetter.objects.bulk_update(burst + steady, ["last_failed_at"])
    log_in(page, live_server.url, "carla")

    page.goto(f"{live_server.url}/console/failed/groups/")
    expect(page.locator("th", has_text="Trend (last 24 h, per hour)")).to_be_visible()
    rows = page.locator("tr[data-fingerprint]")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator(".trend-total")).to_have_text("6 · peak 4")
    expect(rows.nth(1).locator(".trend-total")).to_have_text("3 · peak 1")
    for index in range(2):
        expect(rows.nth(index).locator(".sparkline canvas")).to_have_count(1)
    lengths = _plot_lengths(page, "tr[data-fingerprint] .sparkline")
    assert lengths[0] == 25
    assert _series_pixels(page, "tr[data-fingerprint] .sparkline") > 10
    box = rows.nth(0).locator(".sparkline .u-over").bounding_box()
    for step in range(40):  # sweep until the cursor lands on the burst's bucket
        page.mouse.move(box["x"] + box["width"] * step / 40, box["y"] + box["height"] / 2)
        if "4 failures" in (rows.nth(0).locator(".chart-tooltip").text_content() or ""):
            break
    expect(rows.nth(0).locator(".chart-tooltip")).to_contain_text("4 failures")
    screenshot(page, "failure-groups-trend")

    page.select_option("select[name=trend]", "7d")
    page.click("form.filters button[type=submit]")
    expect(page.locator("th", has_text="Trend (last 7 days, per 6 h)")).to_be_visible()
    assert _plot_lengths(page, "tr[data-fingerprint] .sparkline")[0] == 29
