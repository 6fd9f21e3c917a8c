"""The broker's auth endpoints answer the broker (straight at gunicorn) and never the internet (Caddy)."""

from __future__ import annotations

import pytest

from ingest.services.devices import device_key_issue
from tests.deploy.test_caddy import web_stack
from tests.factories import DeviceFactory

SECRET = "caddy-test-broker-secret"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.usefixtures("committed_db")
def test_caddy_refuses_the_broker_auth_endpoints_that_gunicorn_answers(tmp_path, ingest_queue):
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    login = f"username={device.serial_no}&password={key}"
    with web_stack(tmp_path, ingest_queue, gunicorn_env={"BROKER_AUTH_SECRET": SECRET}) as stack:
        for question in ("user", "vhost", "resource", "topic"):
            path = f"/internal/broker-auth/{SECRET}/{question}"
            status, _, answer = stack.request("POST", path, login, FORM)
            assert status == 404 and answer != b"allow", question
        direct = stack.request("POST", f"/internal/broker-auth/{SECRET}/user", login, FORM, direct=True)
        assert direct[0] == 200 and direct[2] == b"allow"
        assert stack.request("GET", "/internal/", direct=False)[0] == 404
