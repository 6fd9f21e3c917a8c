"""Login throttling (per user name and per client address), short sessions, no-store pages."""

from __future__ import annotations

import time

import pytest
from django.test import Client, RequestFactory

from config.sessions import ACTIVE_AT, STARTED_AT
from dashboard.lockout import client_address
from tests.factories import DeviceFactory, UserFactory

pytestmark = pytest.mark.django_db

RIGHT = "console-pw-1"


def _login(client: Client, username: str, password: str, path: str = "/console/login/"):
    return client.post(path, {"username": username, "password": password})


def _logged_in(client: Client) -> bool:
    return client.get("/console/").status_code == 200


def test_forty_wrong_passwords_then_the_right_one_is_refused(operator):
    client = Client(REMOTE_ADDR="192.0.2.10")
    for _ in range(40):
        assert _login(client, "olivia", "wrong").status_code in (200, 429)

    response = _login(client, "olivia", RIGHT)

    assert response.status_code == 429
    assert int(response["Retry-After"]) == 15 * 60
    page = response.content.decode()
    assert "Login locked" in page and "Try again in 15 minutes" in page
    assert 'href="/static/dashboard/console' in page  # the console's own styled page
    assert not _logged_in(client)


def test_the_lockout_holds_for_the_user_name_from_any_address(operator, settings):
    for number in range(settings.AXES_FAILURE_LIMIT):
        _login(Client(REMOTE_ADDR=f"192.0.2.{number + 1}"), "olivia", "wrong")

    fresh = Client(REMOTE_ADDR="198.51.100.7")
    assert _login(fresh, "olivia", RIGHT).status_code == 429
    assert not _logged_in(fresh)
    # Another user from that fresh address is not affected.
    UserFactory(username="uma")
    assert _login(fresh, "uma", RIGHT).status_code == 302


def test_the_lockout_holds_for_an_address_across_user_names(operator, settings):
    attacker = Client(REMOTE_ADDR="203.0.113.5")
    for number in range(settings.AXES_FAILURE_LIMIT):
        _login(attacker, f"guess{number}", "wrong")

    assert _login(attacker, "olivia", RIGHT).status_code == 429
    assert not _logged_in(attacker)
    # Olivia herself, from her own address, still gets in.
    assert _login(Client(REMOTE_ADDR="198.51.100.8"), "olivia", RIGHT).status_code == 302


def test_below_the_limit_the_right_password_logs_in(operator, settings):
    client = Client(REMOTE_ADDR="192.0.2.20")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, "olivia", "wrong")
    assert _login(client, "olivia", RIGHT).status_code == 302
    assert _logged_in(client)


def test_logging_in_with_an_account_of_ones_own_does_not_reset_the_count(operator, settings):
    """Rounds of guesses at olivia's password, each followed by the guesser logging in as
    themselves from the same address, must add up: a success clears nothing."""
    UserFactory(username="mallory")
    for _ in range(5):
        guesser = Client(REMOTE_ADDR="203.0.113.5")
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            _login(guesser, "olivia", "wrong")
        _login(guesser, "mallory", RIGHT)
        guesser.post("/console/logout/")

    assert _login(Client(REMOTE_ADDR="203.0.113.5"), "olivia", RIGHT).status_code == 429
    assert _login(Client(REMOTE_ADDR="198.51.100.9"), "olivia", RIGHT).status_code == 429


def test_the_admin_login_is_locked_out_too(settings):
    UserFactory(username="root", is_superuser=True)
    client = Client(REMOTE_ADDR="192.0.2.30")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "root", "wrong", path="/admin/login/")

    response = _login(client, "root", RIGHT, path="/admin/login/")

    assert response.status_code == 429
    assert "Login locked" in response.content.decode()
    assert client.get("/admin/").status_code == 302  # still sent to the login page


def test_the_address_behind_the_proxy_is_the_one_the_proxy_saw(settings):
    settings.TRUSTED_PROXY_ADDRESSES = ["127.0.0.1", "10.0.0.0/8"]
    request = RequestFactory(REMOTE_ADDR="127.0.0.1").get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9")
    assert client_address(request) == "203.0.113.9"  # the left part was written by the client
    request = RequestFactory(REMOTE_ADDR="10.1.2.3").get("/", HTTP_X_FORWARDED_FOR="203.0.113.9, 10.9.9.9")
    assert client_address(request) == "203.0.113.9"  # a chain of trusted proxies is skipped
    # A peer that is not a trusted proxy cannot choose its address.
    request = RequestFactory(REMOTE_ADDR="198.51.100.1").get("/", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert client_address(request) == "198.51.100.1"
    request = RequestFactory(REMOTE_ADDR="127.0.0.1").get("/", HTTP_X_FORWARDED_FOR="not-an-address")
    assert client_address(request) == "127.0.0.1"


@pytest.mark.parametrize("trusted", [["*"], ["172.18.0.0/16"]], ids=["any-peer", "compose-network"])
def test_behind_a_proxy_trusted_by_star_or_network_each_client_has_its_own_address(settings, trusted):
    """The compose files trust the proxy container (``*``): the address Caddy saw counts,
    not Caddy's own, or one guesser would lock every client out."""
    settings.TRUSTED_PROXY_ADDRESSES = trusted
    request = RequestFactory(REMOTE_ADDR="172.18.0.5").get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7")
    assert client_address(request) == "203.0.113.7"


def test_one_guesser_behind_the_compose_proxy_does_not_lock_others_out(operator, settings):
    settings.TRUSTED_PROXY_ADDRESSES = ["*"]

    def through_caddy(client_seen_by_caddy: str) -> Client:
        return Client(REMOTE_ADDR="172.18.0.5", HTTP_X_FORWARDED_FOR=client_seen_by_caddy)

    for number in range(settings.AXES_FAILURE_LIMIT):
        _login(through_caddy("203.0.113.7"), f"guess{number}", "wrong")

    assert _login(through_caddy("203.0.113.7"), "olivia", RIGHT).status_code == 429
    assert _login(through_caddy("198.51.100.9"), "olivia", RIGHT).status_code == 302


def test_spoofed_forwarded_addresses_do_not_escape_the_lockout(operator, settings):
    """Rotating X-Forwarded-For from an untrusted peer changes nothing."""
    for number in range(settings.AXES_FAILURE_LIMIT):
        client = Client(REMOTE_ADDR="198.51.100.50", HTTP_X_FORWARDED_FOR=f"203.0.113.{number + 1}")
        _login(client, f"guess{number}", "wrong")
    client = Client(REMOTE_ADDR="198.51.100.50", HTTP_X_FORWARDED_FOR="203.0.113.200")
    assert _login(client, "olivia", RIGHT).status_code == 429


# --- sessions -------------------------------------------------------------------------


def _logged_in_client(operator) -> Client:
    client = Client(REMOTE_ADDR="192.0.2.60")
    assert _login(client, "olivia", RIGHT).status_code == 302
    assert _logged_in(client)
    return client


def _age_session(client: Client, **seconds_ago: float) -> None:
    session = client.session
    for key, ago in seconds_ago.items():
        session[key] = time.time() - ago
    session.save()


def test_the_session_cookie_ends_with_the_browser(operator):
    client = _logged_in_client(operator)
    cookie = client.cookies["sessionid"]
    assert not cookie["expires"] and not cookie["max-age"]
    assert cookie["httponly"]


def test_a_session_idle_past_the_timeout_is_logged_out(operator, settings):
    client = _logged_in_client(operator)
    _age_session(client, **{ACTIVE_AT: settings.SESSION_IDLE_TIMEOUT_SECONDS + 5})

    response = client.get("/console/")

    assert response.status_code == 302 and response["Location"].startswith("/console/login/")
    assert "without activity" in client.get(response["Location"]).content.decode()
    assert not _logged_in(client)


def test_the_idle_timeout_in_real_time(operator, settings):
    settings.SESSION_IDLE_TIMEOUT_SECONDS = 1
    client = _logged_in_client(operator)
    time.sleep(1.5)
    assert not _logged_in(client)


def test_use_keeps_the_session_but_a_live_panel_refreshing_does_not(operator, settings):
    client = _logged_in_client(operator)
    idle = settings.SESSION_IDLE_TIMEOUT_SECONDS - 120
    _age_session(client, **{ACTIVE_AT: idle})

    assert client.get("/console/overview/panel/", HTTP_X_REQUESTED_WITH="fetch").status_code == 200
    assert time.time() - client.session[ACTIVE_AT] >= idle  # a refresh is not activity

    assert _logged_in(client)  # a page the operator opened is
    assert time.time() - client.session[ACTIVE_AT] < 5


def test_a_session_past_its_maximum_age_is_logged_out_even_when_active(operator, settings):
    client = _logged_in_client(operator)
    _age_session(client, **{STARTED_AT: settings.SESSION_COOKIE_AGE + 5, ACTIVE_AT: 10})

    assert not _logged_in(client)


def test_logging_in_again_restarts_the_clocks(operator, settings):
    client = _logged_in_client(operator)
    _age_session(client, **{STARTED_AT: settings.SESSION_COOKIE_AGE - 10})

    assert _login(client, "olivia", RIGHT).status_code == 302

    assert time.time() - client.session[STARTED_AT] < 5
    assert _logged_in(client)


def test_the_page_showing_a_new_device_key_is_never_stored(operator_client):
    device = DeviceFactory()

    response = operator_client.post(
        f"/console/devices/{device.pk}/keys/issue/", {"name": "spare"}, follow=True
    )

    assert response.status_code == 200 and "issued-key" in response.content.decode()
    directives = {part.strip() for part in response["Cache-Control"].split(",")}
    assert {"no-store", "private"} <= directives
