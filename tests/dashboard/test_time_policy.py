"""One time policy: the viewer's zone renders every time and reads every typed filter time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.template import Context, Template
from django.test import Client
from django.utils import timezone

from dashboard.filters import DeadLetterFilterForm
from dashboard.models import BulkPlan
from dashboard.timezones import ZONE_COOKIE, describe_age, format_instant, viewer_zone_from_name
from tests.factories import DeadLetterFactory

NEW_YORK = "America/New_York"
INSTANT = datetime(2026, 11, 24, 14, 3, 7, tzinfo=UTC)


@pytest.mark.parametrize("name", [None, "", "UTC"])
def test_no_choice_or_utc_is_utc_without_complaint(name):
    zone = viewer_zone_from_name(name)
    assert zone.name == "UTC" and zone.is_utc and zone.problem == ""


def test_a_known_zone_is_used():
    zone = viewer_zone_from_name(NEW_YORK)
    assert zone.name == NEW_YORK and not zone.problem
    assert format_instant(INSTANT, zone.zone) == "2026-11-24 09:03:07 EST"


@pytest.mark.parametrize(
    "name", ["Mars/Olympus_Mons", "../../etc/passwd", "Europe/" + "x" * 80, "a b", "/UTC"]
)
def test_an_unknown_or_malformed_zone_falls_back_to_utc_and_says_so(name):
    zone = viewer_zone_from_name(name)
    assert zone.name == "UTC" and zone.zone is UTC
    assert "Unknown time zone" in zone.problem and "UTC" in zone.problem


def test_one_format_with_the_zone_shown():
    assert format_instant(INSTANT, UTC) == "2026-11-24 14:03:07 UTC"
    assert format_instant(INSTANT, viewer_zone_from_name("Europe/Berlin").zone) == "2026-11-24 15:03:07 CET"


@pytest.mark.parametrize(
    ("ago", "words"),
    [
        (timedelta(seconds=2), "just now"),
        (timedelta(seconds=42), "42 s ago"),
        (timedelta(minutes=3, seconds=20), "3 min ago"),
        (timedelta(hours=5), "5 h ago"),
        (timedelta(days=2, hours=1), "2 d ago"),
        (-timedelta(seconds=20), "in 20 s"),
    ],
)
def test_ages_read_as_people_say_them(ago, words):
    assert describe_age(INSTANT - ago, now=INSTANT) == words


def test_the_template_filters_write_time_elements_in_the_active_zone():
    rendered = Template(
        "{% load console %}{{ at|console_time }}|{{ at|console_age }}|{{ none|console_time }}"
    )
    with timezone.override(viewer_zone_from_name(NEW_YORK).zone):
        html = rendered.render(Context({"at": INSTANT, "none": None}))
    assert '<time datetime="2026-11-24T14:03:07Z" data-console-time>2026-11-24 09:03:07 EST</time>' in html
    assert 'data-console-age title="2026-11-24 09:03:07 EST">' in html
    assert html.endswith("|–")


def _client(user, zone: str | None) -> Client:
    client = Client()
    client.force_login(user)
    if zone is not None:
        client.cookies[ZONE_COOKIE] = zone
    return client


@pytest.mark.django_db
def test_pages_show_times_in_the_chosen_zone_and_the_filter_names_it(operator):
    DeadLetterFactory(last_failed_at=INSTANT)

    page = _client(operator, NEW_YORK).get("/console/failed/").content.decode()

    assert "2026-11-24 09:03:07 EST" in page and "14:03:07 UTC" not in page
    assert f"data-zone-name>{NEW_YORK}</span>" in page  # on the filter's time fields and the toggle
    assert f'data-zone="{NEW_YORK}"' in page


@pytest.mark.django_db
def test_a_bad_zone_cookie_shows_utc_and_says_why(operator):
    DeadLetterFactory(last_failed_at=INSTANT)

    page = _client(operator, "Mars/Olympus_Mons").get("/console/failed/").content.decode()

    assert "2026-11-24 14:03:07 UTC" in page
    assert 'id="zone-problem"' in page and "Unknown time zone &#x27;Mars/Olympus_Mons&#x27;" in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("zone", "expected"), [(NEW_YORK, {"late"}), ("UTC", {"early", "late"}), (None, {"early", "late"})]
)
def test_a_since_filter_is_read_in_the_zone_shown(operator, zone, expected):
    # 10:00 UTC and 15:00 UTC; "since 09:00" in New York is 14:00 UTC.
    DeadLetterFactory(error_class="early", last_failed_at=INSTANT.replace(hour=10))
    DeadLetterFactory(error_class="late", last_failed_at=INSTANT.replace(hour=15))

    page = _client(operator, zone).get("/console/failed/", {"since": "2026-11-24T09:00"}).content.decode()

    shown = {name for name in ("early", "late") if f"<strong>{name}</strong>" in page}
    assert shown == expected


def test_a_time_with_an_offset_means_that_instant_in_any_zone():
    with timezone.override(viewer_zone_from_name(NEW_YORK).zone):
        form = DeadLetterFilterForm({"since": "2026-11-24T09:00:00+00:00"})
        assert form.is_valid()
    assert form.cleaned_data["since"] == INSTANT.replace(hour=9, minute=0, second=0)


def test_a_stored_selection_keeps_the_zone_it_was_typed_in():
    with timezone.override(viewer_zone_from_name(NEW_YORK).zone):
        form = DeadLetterFilterForm({"since": "2026-11-24T09:00", "status": "dead"})
        assert form.is_valid()
        stored = form.query_with_zones()
    assert stored == {"status": "dead", "since": "2026-11-24T09:00:00-05:00"}
    reread = DeadLetterFilterForm(stored)  # a background job, in UTC
    assert reread.is_valid() and reread.cleaned_data["since"] == INSTANT.replace(hour=14, minute=0, second=0)


@pytest.mark.django_db
def test_bulk_by_filter_stores_the_instant_the_operator_meant(operator):
    meant = DeadLetterFactory(last_failed_at=INSTANT.replace(hour=15))  # 10:00 in New York
    DeadLetterFactory(last_failed_at=INSTANT.replace(hour=13))  # 08:00 there: before 09:00
    client = _client(operator, NEW_YORK)

    client.post(
        "/console/failed/bulk/",
        {"scope": "filter", "action": "requeue", "status": "dead", "since": "2026-11-24T09:00"},
    )

    plan = BulkPlan.objects.get()
    assert plan.selection.dead_letter_ids == [meant.pk]
    assert "since 2026-11-24T09:00:00-05:00" in plan.selection.criteria


@pytest.mark.django_db
def test_a_background_refresh_without_a_session_is_told_not_redirected():
    client = Client()

    answer = client.get("/console/overview/panel/", HTTP_X_REQUESTED_WITH="fetch")

    assert answer.status_code == 401 and answer["Content-Type"] == "application/json"
    assert answer.json() == {"detail": "Session expired: sign in again.", "login_url": "/console/login/"}
    # A person opening a page is still sent to the login page.
    assert client.get("/console/overview/panel/").status_code == 302


def test_table_cells_write_times_ages_and_nothing_the_console_way():
    from dashboard.timezones import Recency

    rendered = Template(
        "{% load console %}{{ a|console_cell }}|{{ b|console_cell }}|{{ c|console_cell }}|{{ d|console_cell }}"
    )
    with timezone.override(UTC):
        html = rendered.render(Context({"a": INSTANT, "b": Recency(INSTANT), "c": None, "d": "x" * 100}))
    at, age, nothing, text = html.split("|")
    assert at.endswith(">2026-11-24 14:03:07 UTC</time>")
    assert "data-console-age" in age and age.endswith(" ago</time>")
    assert nothing == "–"
    assert len(text) == 80 and text.endswith("…")


def test_a_stream_is_written_in_the_viewers_zone_and_the_zone_ends_with_the_request(rf):
    from django.http import StreamingHttpResponse

    from dashboard.timezones import ViewerTimeZoneMiddleware

    def stream(request):
        return StreamingHttpResponse(timezone.get_current_timezone_name() for _ in range(2))

    request = rf.get("/console/alerts/stream/")
    request.COOKIES[ZONE_COOKIE] = NEW_YORK
    response = ViewerTimeZoneMiddleware(stream)(request)

    assert timezone.get_current_timezone_name() == "UTC"  # nothing leaks into the next request
    assert b"".join(response.streaming_content) == f"{NEW_YORK}{NEW_YORK}".encode()
    assert timezone.get_current_timezone_name() == "UTC"


@pytest.mark.django_db
def test_a_time_that_does_not_exist_in_the_zone_shown_is_a_form_error_naming_the_zone(operator):
    # Clocks in New York jump from 02:00 to 03:00 on 2026-03-08: 02:30 never happened there.
    answer = _client(operator, NEW_YORK).get("/console/failed/", {"since": "2026-03-08T02:30"})

    page = answer.content.decode()
    assert answer.status_code == 400 and 'id="filter-errors"' in page
    assert "America/New_York" in page and "may not exist" in page
