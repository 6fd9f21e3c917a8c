"""Addresses a hostile or broken client can type: a clear 4xx, never a 500."""

from __future__ import annotations

import pytest

from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/console/failed/bulk/plans/a%00b/",
        "/console/devices/{device}/keys/issued/a%00b/",
    ],
)
def test_a_nul_in_a_token_is_a_404_not_a_500(operator_client, path):
    device = DeviceFactory()
    assert operator_client.get(path.format(device=device.pk)).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/console/failed/bulk/plans/a%00b/confirm/",
        "/console/devices/{device}/keys/a%00b/revoke/",
    ],
)
def test_a_nul_in_an_action_address_is_a_404_not_a_500(operator_client, path):
    device = DeviceFactory()
    assert operator_client.post(path.format(device=device.pk)).status_code == 404


@pytest.mark.parametrize("action", ["resume", "cancel"])
def test_acting_on_a_bulk_job_that_does_not_exist_is_refused_and_said(operator_client, action):
    # A refused console action goes back with the reason, as every refusal does.
    response = operator_client.post(f"/console/jobs/987654/{action}/", follow=True)
    assert response.status_code == 200
    assert "no bulk job 987654" in response.content.decode()


@pytest.mark.parametrize(
    "request_kwargs",
    [{"data": {"after": "²"}}, {"HTTP_LAST_EVENT_ID": "²"}],
    ids=["after", "last-event-id"],
)
def test_a_digit_that_is_not_ascii_starts_the_alert_stream_from_the_beginning(viewer_client, request_kwargs):
    response = viewer_client.get("/console/alerts/stream/", **request_kwargs)
    assert response.status_code == 200
    chunks = iter(response.streaming_content)
    assert next(chunks).decode().startswith("retry:")
    response.close()  # ends the stream and gives its slot back
