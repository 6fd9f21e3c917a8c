"""Through the real Caddy: a client cannot pick its own address for the login lockout."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from django.conf import settings

from tests.deploy.test_caddy import web_stack
from tests.factories import UserFactory


@pytest.mark.usefixtures("committed_db")
def test_rotating_x_forwarded_for_through_caddy_does_not_escape_the_lockout(tmp_path, ingest_queue):
    UserFactory(username="olivia")
    with web_stack(tmp_path, ingest_queue, gunicorn_env={"GUNICORN_WORKERS": "2"}) as stack:
        _, headers, page = stack.request("GET", "/console/login/")
        csrf_cookie = re.search(r"csrftoken=([^;]+)", headers["set-cookie"]).group(1)
        csrf_form = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()

        def attempt(username: str, password: str, claimed_address: str) -> int:
            return stack.request(
                "POST",
                "/console/login/",
                urlencode({"username": username, "password": password, "csrfmiddlewaretoken": csrf_form}),
                {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Cookie": f"csrftoken={csrf_cookie}",
                    "Referer": f"https://localhost:{stack.https_port}/console/login/",
                    "X-Forwarded-For": claimed_address,
                },
                timeout=30,
            )[0]

        # Each guess claims another address and another user name: only the address
        # Caddy saw counts, so they all add up against it.
        for number in range(settings.AXES_FAILURE_LIMIT):
            attempt(f"guess{number}", "wrong", f"203.0.113.{number + 1}")

        assert attempt("olivia", "console-pw-1", "198.51.100.77") == 429
