"""The real Caddy in front of the real gunicorn, over HTTPS with Caddy's local CA."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from ingest.models import IngestMessage
from ingest.services.devices import device_key_issue
from tests.factories import DeviceFactory
from tests.workers import PROJECT_ROOT, stop_worker_process, wait_until, worker_environment

CADDYFILE = Path(settings.BASE_DIR) / "Caddyfile"
pytestmark = pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy is installed by deploy/test.sh")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _caddy_env(tmp_path, **extra) -> dict:
    return {
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "DOMAIN": "localhost",
        **extra,
    }


def test_the_caddyfile_is_valid(tmp_path):
    result = subprocess.run(
        ["caddy", "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=_caddy_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


@pytest.mark.usefixtures("committed_db")
def test_https_through_caddy_reaches_healthz_and_the_ingest_api(tmp_path, ingest_queue):
    _, key = device_key_issue(device=DeviceFactory())
    web_port, https_port = _free_port(), _free_port()
    gunicorn = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py", "config.wsgi:application"],
        cwd=PROJECT_ROOT,
        env={
            **worker_environment(ingest_queue),
            "GUNICORN_BIND": f"127.0.0.1:{web_port}",
            "GUNICORN_WORKERS": "2",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    caddy = subprocess.Popen(
        ["caddy", "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=_caddy_env(
            tmp_path,
            HTTP_PORT=str(_free_port()),
            HTTPS_PORT=str(https_port),
            UPSTREAM=f"127.0.0.1:{web_port}",
            CADDY_ADMIN="off",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    root_certificate = tmp_path / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    try:
        assert wait_until(root_certificate.exists, timeout=30), "Caddy made no local CA"
        tls = ssl.create_default_context(cafile=str(root_certificate))  # verified, not ignored

        def request(method, path, body=None, headers=None):
            connection = http.client.HTTPSConnection("localhost", https_port, context=tls, timeout=10)
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return (
                response.status,
                {name.lower(): value for name, value in response.getheaders()},
                response.read(),
            )

        def healthy():
            try:
                return request("GET", "/healthz")[0] == 200
            except OSError:
                return False

        assert wait_until(healthy, timeout=30)
        status, headers, body = request("GET", "/healthz")
        assert json.loads(body) == {"status": "ok"}
        assert headers["strict-transport-security"].startswith("max-age=31536000")
        assert headers["x-content-type-options"] == "nosniff"
        assert len(headers["x-request-id"]) == 36  # Caddy's request uuid reaches the app

        reading = {
            "readings": [
                {
                    "metric": "heart_rate",
                    "value": 70,
                    "measured_at": (timezone.now() - timedelta(minutes=1)).isoformat(),
                }
            ]
        }
        status, _, body = request(
            "POST",
            "/api/v1/ingest/",
            json.dumps(reading),
            {"Content-Type": "application/json", "Authorization": f"Api-Key {key}"},
        )
        assert status == 202, body
        assert IngestMessage.objects.filter(message_id=json.loads(body)["id"]).exists()

        status, _, _ = request(
            "POST",
            "/api/v1/ingest/",
            b"x" * (1024 * 1024 + 10),
            {"Content-Type": "application/json", "Authorization": f"Api-Key {key}"},
        )
        assert status == 413
        assert request("GET", "/metrics")[0] == 404  # never through the proxy
    finally:
        stop_worker_process(caddy)
        stop_worker_process(gunicorn)
