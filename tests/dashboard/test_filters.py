"""Console filters: one vocabulary for lists and bulk jobs; a bad value is a 400 naming the field."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from dashboard.filters import DeadLetterFilterForm
from dashboard.models import BulkJob, BulkPlan
from ingest.models import DeadLetter
from tests.factories import AlertFactory, DeadLetterFactory, DeviceFactory, SensorReadingFactory

pytestmark = pytest.mark.django_db

# (parameter, bad value, what the error says): each one was a 500 or silently ignored.
BAD_TIMES = [
    ("since", "2026-02-30", "Enter a real date and time"),
    ("since", "2026-11-23T25:00", "Enter a real date and time"),
    ("since", "yesterday", "Enter a real date and time"),
    ("until", "2026-13-01T00:00", "Enter a real date and time"),
]
BAD_DEVICES = [
    ("device", "²", "Enter an id (digits 0-9)"),
    ("device", "٣", "Enter an id (digits 0-9)"),
    ("device", "99999999999999999999", "No id is this large"),
]
BAD_TEXT = [("q", "heart\x00rate", "Null characters are not allowed")]
BAD_STATUS = [("status", "bogus", "Select a valid choice")]
BAD_CURSOR = [
    ("before", "2026-02-30T00:00:00|5", "This is not a page link"),
    ("before", "9" * 30, "This is not a page link"),
]


def _refused(response, name: str, reason: str) -> str:
    assert response.status_code == 400, response.status_code
    content = response.content.decode()
    assert 'id="filter-errors"' in content
    assert f"({name})</strong>: {reason}" in content
    return content


@pytest.mark.parametrize(
    ("name", "value", "reason"), BAD_TIMES + BAD_DEVICES + BAD_TEXT + BAD_STATUS + BAD_CURSOR
)
def test_a_bad_filter_on_failed_messages_is_a_form_error_and_lists_nothing(
    viewer_client, name, value, reason
):
    shown = DeadLetterFactory(device_id=7)
    response = viewer_client.get("/console/failed/?" + urlencode({"status": "dead", name: value}))
    content = _refused(response, name, reason)
    assert str(shown.message_id)[:10] not in content
    assert response.context["page"].rows == []


def test_good_filters_on_failed_messages_still_apply(viewer_client):
    matching = DeadLetterFactory(device_id=7)
    DeadLetterFactory(device_id=8)
    response = viewer_client.get("/console/failed/?device=7&since=2000-01-01T00:00&until=2999-01-01")
    assert response.status_code == 200
    assert response.context["page"].rows == [matching]


@pytest.mark.parametrize(("name", "value", "reason"), BAD_STATUS)
def test_a_bad_status_on_failure_groups_is_a_form_error(viewer_client, name, value, reason):
    DeadLetterFactory()
    response = viewer_client.get("/console/failed/groups/?" + urlencode({name: value}))
    _refused(response, name, reason)
    assert response.context["groups"] == []


@pytest.mark.parametrize(
    ("slug", "name", "value", "reason"),
    [
        *[("readings", name, value, reason) for name, value, reason in BAD_TIMES + BAD_DEVICES + BAD_CURSOR],
        ("readings", "resident", "²", "Enter an id (digits 0-9) or a name"),
        ("readings", "metric", "\x00", "Null characters are not allowed"),
        *[("events", name, value, reason) for name, value, reason in BAD_TIMES + BAD_DEVICES],
        ("events", "severity", "9", "Select a valid choice"),
        ("webhook-events", "since", "yesterday", "Enter a real date and time"),
        ("alerts", "status", "bogus", "Select a valid choice"),
        ("alerts", "device", "²", "Enter an id (digits 0-9)"),
        ("devices", "status", "bogus", "Select a valid choice"),
        ("devices", "type", "toaster", "Select a valid choice"),
        ("residents", "name", "Ada\x00", "Null characters are not allowed"),
    ],
)
def test_a_bad_filter_on_a_record_list_is_a_form_error_and_lists_nothing(
    viewer_client, slug, name, value, reason
):
    device = DeviceFactory(serial_no="VIT-1")
    SensorReadingFactory(device=device)
    AlertFactory()
    # alerts have their own list, with the same filters
    list_url = "/console/alerts/" if slug == "alerts" else f"/console/records/{slug}/"
    response = viewer_client.get(list_url + "?" + urlencode({name: value}))
    _refused(response, name, reason)
    assert response.context["page"].rows == []


def test_the_readings_of_a_device_still_filter_by_time(viewer_client):
    device = DeviceFactory(serial_no="VIT-1")
    reading = SensorReadingFactory(device=device)
    response = viewer_client.get(f"/console/records/readings/?device={device.pk}&since=2000-01-01T00:00")
    assert response.status_code == 200
    assert response.context["page"].rows == [reading]


@pytest.mark.parametrize(("name", "value", "reason"), BAD_TIMES + BAD_DEVICES + BAD_TEXT + BAD_STATUS)
def test_a_bulk_job_from_a_bad_filter_is_refused_and_nothing_is_queued(operator_client, name, value, reason):
    DeadLetterFactory.create_batch(2)
    response = operator_client.post(
        "/console/failed/bulk/",
        {"action": "discard", "scope": "filter", "reason": "cleanup", name: value},
        follow=True,
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert f"{name}: {reason}" in content
    assert not BulkJob.objects.exists()
    assert DeadLetter.objects.filter(status="dead").count() == 2


def test_a_bulk_job_with_an_unknown_scope_or_a_bad_id_acts_on_nothing(operator_client):
    DeadLetterFactory.create_batch(2)
    for data in (
        {"scope": "everything"},
        {"scope": "selected", "ids": ["²"]},
        {"scope": "group", "fingerprint": "\x00"},
    ):
        response = operator_client.post(
            "/console/failed/bulk/", {"action": "discard", "reason": "cleanup", **data}, follow=True
        )
        assert response.status_code == 200
        assert b'class="error"' in response.content
    assert not BulkJob.objects.exists()


def test_a_bulk_plan_freezes_what_the_list_showed_for_the_same_filter(operator_client, viewer_client):
    """The list and the bulk plan parse the filter with the same form; the plan keeps ids, not the query."""
    DeadLetterFactory.create_batch(2, device_id=7)
    DeadLetterFactory(device_id=8)
    listed = viewer_client.get("/console/failed/?device=7&since=2000-01-01T00:00").context["page"].rows
    operator_client.post(
        "/console/failed/bulk/",
        {"action": "discard", "scope": "filter", "device": "7", "since": "2000-01-01T00:00"},
    )
    plan = BulkPlan.objects.get()
    assert plan.total == len(listed) == 2
    assert plan.selection.dead_letter_ids == sorted(letter.pk for letter in listed)
    assert (plan.selection.scope, plan.selection.criteria) == (
        "filter",
        "matching device 7, since 2000-01-01T00:00:00+00:00",
    )
    assert not BulkJob.objects.exists()  # nothing is done before the plan is confirmed


def test_the_form_parses_ids_serials_and_times():
    form = DeadLetterFilterForm({"device": "VIT-7", "since": "2026-11-23T07:00", "status": "dead"})
    assert form.is_valid()
    filters = form.filters()
    assert filters["device"] == "VIT-7" and filters["status"] == "dead"
    assert filters["since"].isoformat() == "2026-11-23T07:00:00+00:00"
    assert DeadLetterFilterForm({"device": "42"}).filters_or_refuse() == {"device": 42}


def test_an_unknown_overview_window_is_a_form_error_not_silently_the_last_hour(viewer_client):
    response = viewer_client.get("/console/?window=week")
    _refused(response, "window", "Select a valid choice")
    assert "Showing the last hour instead" in response.content.decode()
    assert viewer_client.get("/console/overview/panel/?window=week").status_code == 400
    assert viewer_client.get("/console/?window=day").context["window"] == "day"


def test_a_device_named_by_serial_means_the_same_rows_in_records_failed_messages_and_bulk_plans(
    operator_client, viewer_client
):
    """One reference vocabulary: "VIT-7" and its id select the same device everywhere."""
    device, other = DeviceFactory(serial_no="VIT-7"), DeviceFactory(serial_no="VIT-8")
    letters = DeadLetterFactory.create_batch(2, device_id=device.pk)
    DeadLetterFactory(device_id=other.pk)
    DeadLetterFactory(device_id=None)
    reading = SensorReadingFactory(device=device)
    SensorReadingFactory(device=other)

    for named in ("VIT-7", str(device.pk)):
        failed = viewer_client.get("/console/failed/?" + urlencode({"device": named}))
        assert failed.status_code == 200
        assert sorted(letter.pk for letter in failed.context["page"].rows) == sorted(
            letter.pk for letter in letters
        )
        for path in ("/console/records/readings/", "/console/records/events/", "/console/alerts/"):
            listed = viewer_client.get(path + "?" + urlencode({"device": named}))
            assert listed.status_code == 200
        readings = viewer_client.get("/console/records/readings/?" + urlencode({"device": named}))
        assert readings.context["page"].rows == [reading]

    operator_client.post(
        "/console/failed/bulk/", {"action": "discard", "scope": "filter", "reason": "r", "device": "VIT-7"}
    )
    assert BulkPlan.objects.get().total == 2


def test_a_resident_named_by_part_of_their_name_or_by_id_filters_devices_and_readings(viewer_client):
    ada = DeviceFactory(resident__full_name="Ada Lovelace")
    DeviceFactory(resident__full_name="Grace Hopper")
    reading = SensorReadingFactory(device=ada)

    for named in ("lovelace", str(ada.resident_id)):
        devices = viewer_client.get("/console/records/devices/?" + urlencode({"resident": named}))
        assert devices.context["page"].rows == [ada]
        readings = viewer_client.get("/console/records/readings/?" + urlencode({"resident": named}))
        assert readings.context["page"].rows == [reading]
