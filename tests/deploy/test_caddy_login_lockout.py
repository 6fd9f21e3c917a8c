"""Through the real Caddy: a client cannot pick its own address for the login lockout."""

from __future__ import annotations

import http.client
import re
import ssl
import subprocess
from urllib.parse import urlencode

import pytest
from django.conf import settings

from tests.deploy.test_caddy import CADDY, CADDYFILE, _caddy_env
from tests.factories import UserFactory
from tests.web import free_port, gunicorn_server
from tests.workers import stop_worker_process, wait_until


@pytest.mark.usefixtures("committed_db")
def test_rotating_x_forwarded_for_through_caddy_does_not_escape_the_lockout(tmp_path, ingest_queue):
    UserFactory(username="olivia")
    https_port = free_port()
    with gunicorn_server(ingest_queue, workers=2) as web_port:
        caddy = subprocess.Popen(
            [str(CADDY), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
            env=_caddy_env(
                tmp_path,
                HTTP_PORT=str(free_port()),
                HTTPS_PORT=str(https_port),
                UPSTREAM=f"127.0.0.1:{web_port}",
                CADDY_ADMIN="off",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            root_certificate = tmp_path / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
            assert wait_until(root_certificate.exists, timeout=30), "Caddy made no local CA"
            tls = ssl.create_default_context(cafile=str(root_certificate))

            def request(method, path, body=None, headers=None):
                connection = http.client.HTTPSConnection("localhost", https_port, context=tls, timeout=30)
                try:
                    connection.request(method, path, body=body, headers=headers or {})
                    response = connection.getresponse()
                    return response.status, response.getheader("Set-Cookie") or "", response.read()
                finally:
                    connection.close()

            def login_page_answers():
                try:
                    return request("GET", "/console/login/")[0] == 200
                except OSError:
                    return False

            assert wait_until(login_page_answers, timeout=30)
            _, cookie, page = request("GET", "/console/login/")
            csrf_cookie = re.search(r"csrftoken=([^;]+)", cookie).group(1)
            csrf_form = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()

            def attempt(username: str, password: str, claimed_address: str) -> int:
                return request(
                    "POST",
                    "/console/login/",
                    urlencode({"username": username, "password": password, "csrfmiddlewaretoken": csrf_form}),
                    {
                        "Content-Type": "application/x-www-form-urlencoded",
                        "Cookie": f"csrftoken={csrf_cookie}",
                        "Referer": f"https://localhost:{https_port}/console/login/",
                        "X-Forwarded-For": claimed_address,
                    },
                )[0]

            # Each guess claims another address and another user name: only the address
            # Caddy saw counts, so they all add up against it.
            for number in range(settings.AXES_FAILURE_LIMIT):
                attempt(f"guess{number}", "wrong", f"203.0.113.{number + 1}")

            assert attempt("olivia", "console-pw-1", "198.51.100.77") == 429
        finally:
            stop_worker_process(caddy)
