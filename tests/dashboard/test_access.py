"""Every console page needs an active staff user; every action needs the operator role."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import AlertFactory, DeadLetterFactory, DeviceFactory, UserFactory

pytestmark = pytest.mark.django_db

PAGES = [
    "/console/",
    "/console/overview/panel/",
    "/console/failed/",
    "/console/failed/groups/",
    "/console/jobs/",
    "/console/audit/",
    "/console/scheduler/",
    "/console/records/residents/",
    "/console/records/devices/",
    "/console/records/readings/",
    "/console/records/events/",
    "/console/records/webhook-events/",
    "/console/alerts/",
]


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_visitors_are_sent_to_the_login_page(url):
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/console/login/?next=")


@pytest.mark.parametrize("url", PAGES)
def test_a_logged_in_user_who_is_not_staff_is_refused(url):
    client = Client()
    client.force_login(UserFactory(is_staff=False))
    assert client.get(url).status_code == 403


@pytest.mark.parametrize("url", PAGES)
def test_viewers_can_read_every_page(viewer_client, url):
    assert viewer_client.get(url).status_code == 200


def _actions():
    dead = DeadLetterFactory()
    alert = AlertFactory()
    device = alert.device
    return [
        (f"/console/failed/{dead.pk}/requeue/", {}),
        (f"/console/failed/{dead.pk}/discard/", {"reason": "x"}),
        ("/console/failed/bulk/", {"action": "requeue", "scope": "selected", "ids": [dead.pk]}),
        (
            "/console/failed/bulk/",
            {"action": "discard", "scope": "selected", "ids": [dead.pk], "reason": "x"},
        ),
        (f"/console/alerts/{alert.pk}/acknowledge/", {}),
        (f"/console/alerts/{alert.pk}/resolve/", {"note": "x"}),
        (f"/console/devices/{device.pk}/status/", {"status": "retired"}),
        (f"/console/devices/{device.pk}/keys/issue/", {}),
        (f"/console/devices/{device.pk}/keys/revoke/", {}),
        ("/console/scheduler/jobs/collect_sources/", {"action": "run_now"}),
    ]


def test_viewers_are_refused_every_action_and_nothing_changes(viewer_client):
    for url, data in _actions():
        assert viewer_client.post(url, data).status_code == 403, url
    from ingest.models import Alert, DeadLetter, Device

    assert DeadLetter.objects.get().status == "dead"
    assert Alert.objects.get().status == "open"
    assert Device.objects.get().status == "active"


def test_actions_refuse_get(operator_client):
    dead = DeadLetterFactory()
    assert operator_client.get(f"/console/failed/{dead.pk}/discard/").status_code == 405


def test_actions_need_a_csrf_token(operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    dead = DeadLetterFactory()
    response = client.post(f"/console/failed/{dead.pk}/discard/", {"reason": "no token"})
    assert response.status_code == 403
    dead.refresh_from_db()
    assert dead.status == "dead"


def test_login_with_the_right_password_opens_the_overview(operator):
    client = Client()
    response = client.post("/console/login/", {"username": "olivia", "password": "console-pw-1"})
    assert response.status_code == 302 and response["Location"] == "/console/"
    assert client.get("/console/").status_code == 200


def test_login_with_a_wrong_password_is_refused(operator):
    response = Client().post("/console/login/", {"username": "olivia", "password": "wrong"})
    assert response.status_code == 200
    assert b"Wrong user name or password" in response.content


def test_logout_ends_the_session(operator_client):
    assert operator_client.post("/console/logout/").status_code == 302
    assert operator_client.get("/console/").status_code == 302


def test_the_page_header_names_the_role(operator_client, viewer_client):
    assert b"olivia \xc2\xb7 operator" in operator_client.get("/console/").content
    assert b"victor \xc2\xb7 viewer" in viewer_client.get("/console/").content


def test_viewers_do_not_see_action_buttons(viewer_client, operator_client):
    dead = DeadLetterFactory()
    url = f"/console/failed/{dead.pk}/"
    assert b'id="edit-requeue"' not in viewer_client.get(url).content
    assert b'id="edit-requeue"' in operator_client.get(url).content
    device = DeviceFactory()
    assert b"Issue a new key" not in viewer_client.get(f"/console/records/devices/{device.pk}/").content
