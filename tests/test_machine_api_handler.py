"""The machine API (/api/v1/) runs through a lean middleware stack; everything else the full one."""

from __future__ import annotations

import io
import json
import sys
from datetime import timedelta

import pytest
from django.core.signals import request_started
from django.db import close_old_connections
from django.utils import timezone

from config.wsgi import application
from ingest.services.devices import device_key_issue
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db


def _call(method: str, path: str, body: bytes = b"", **headers: str) -> tuple[str, dict[str, str], bytes]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        **{f"HTTP_{name.upper()}": value for name, value in headers.items()},
    }
    if body:
        environ["CONTENT_TYPE"] = "application/json"
    answer = {}

    def start_response(status, response_headers):
        answer["status"] = status
        answer["headers"] = {name.lower(): value for name, value in response_headers}

    # As Django's test client does: the test's transaction must survive the request.
    request_started.disconnect(close_old_connections)
    try:
        response = application(environ, start_response)
        content = b"".join(response)
        response.close()
    finally:
        request_started.connect(close_old_connections)
    return answer["status"], answer["headers"], content


def test_a_device_request_keeps_its_request_id_and_security_headers_without_session_machinery(ingest_queue):
    _, key = device_key_issue(device=DeviceFactory())
    reading = {
        "metric": "heart_rate",
        "value": 70,
        "measured_at": (timezone.now() - timedelta(seconds=5)).isoformat(),
    }

    status, headers, _ = _call(
        "POST",
        "/api/v1/ingest/",
        json.dumps({"readings": [reading]}).encode(),
        AUTHORIZATION=f"Api-Key {key}",
        X_REQUEST_ID="req-123",
    )

    assert status.startswith("202")
    assert headers["x-request-id"] == "req-123"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert "content-security-policy" in headers
    assert "vary" not in headers or "cookie" not in headers["vary"].lower()  # no session was touched
    assert "set-cookie" not in headers


def test_the_console_still_has_sessions_csrf_and_login():
    status, headers, _ = _call("GET", "/console/login/")

    assert status.startswith("200")
    assert "csrftoken" in headers.get("set-cookie", "")
    assert headers["x-frame-options"] == "DENY"
    assert "x-request-id" in headers


def test_only_machine_api_paths_take_the_lean_stack(settings):
    assert settings.MACHINE_API_PATH_PREFIX == "/api/v1/"
    assert "django.contrib.sessions.middleware.SessionMiddleware" not in settings.MACHINE_API_MIDDLEWARE
    assert "axes.middleware.AxesMiddleware" not in settings.MACHINE_API_MIDDLEWARE
    status, headers, _ = _call("GET", "/api/docs/")  # documentation pages keep the full stack
    assert status.startswith("200") and headers["x-frame-options"] == "DENY"
