"""400/403/404/500 outside the API: the console's own page, quoting the request id."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import include, path

from config import urls as site_urls
from tests.factories import DeadLetterFactory

pytestmark = pytest.mark.django_db


def _broken_view(request):
    raise RuntimeError("a bug")


# The site's URLconf plus a view with a bug; Django takes handler500 from the root URLconf.
urlpatterns = [path("console/broken/", _broken_view), path("", include("config.urls"))]
handler500 = site_urls.handler500


def _assert_console_error_page(response, status: int) -> None:
    assert response.status_code == status
    content = response.content.decode()
    assert "iot_care console" in content and "/static/dashboard/console.css" in content
    request_id = response["X-Request-ID"]
    assert f'<code id="request-id">{request_id}</code>' in content


def test_an_unknown_console_page_is_a_styled_404_with_the_request_id(viewer_client):
    _assert_console_error_page(viewer_client.get("/console/nowhere/", HTTP_X_REQUEST_ID="abc-123"), 404)
    assert b"abc-123" in viewer_client.get("/console/failed/999999/", HTTP_X_REQUEST_ID="abc-123").content


def test_a_viewers_action_is_a_styled_403(viewer_client):
    dead = DeadLetterFactory()
    _assert_console_error_page(
        viewer_client.post(f"/console/failed/{dead.pk}/discard/", {"reason": "x"}), 403
    )


def test_a_refused_csrf_check_is_a_styled_403(viewer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(viewer)
    _assert_console_error_page(client.post("/console/logout/"), 403)


def test_a_bad_host_is_a_styled_400(viewer_client):
    _assert_console_error_page(viewer_client.get("/console/", HTTP_HOST="attacker.example"), 400)


@pytest.mark.urls("tests.dashboard.test_error_pages")
def test_a_bug_is_a_styled_500_with_the_request_id(viewer):
    client = Client(raise_request_exception=False)
    client.force_login(viewer)
    _assert_console_error_page(client.get("/console/broken/"), 500)


def test_an_unknown_api_address_answers_json_with_the_request_id(client):
    response = client.get("/api/v1/nowhere/")
    assert response.status_code == 404
    assert response.json() == {
        "code": "not_found",
        "message": "There is nothing at this address.",
        "request_id": response["X-Request-ID"],
    }
