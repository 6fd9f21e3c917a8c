"""The console reads from a real streaming replica; writes, the API and the worker use the primary.

Replay paused on the replica makes the two databases differ on purpose: a row written on
the primary then is on the primary only, so a page shows which database it read.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests

from tests.replica.conftest import PIN_SECONDS, ReplicaSite
from tests.workers import start_command_process, stop_worker_process, wait_until

pytestmark = pytest.mark.usefixtures("replica_site")


@pytest.fixture
def replay_paused(replica_site: ReplicaSite):
    replica_site.cluster.wait_replicated()
    replica_site.cluster.replay_pause()
    try:
        yield
    finally:
        replica_site.cluster.replay_resume()


def _resident_insert(site: ReplicaSite, name: str) -> int:
    with site.cluster.primary() as primary:
        return primary.execute(
            "INSERT INTO residents (full_name) VALUES (%s) RETURNING id", [name]
        ).fetchone()[0]


def _alert_insert(site: ReplicaSite, message: str) -> int:
    with site.cluster.primary() as primary:
        return primary.execute(
            "INSERT INTO alerts (device_id, alert_type, message, status) VALUES (%s, 'fall_detected', %s, 'open')"
            " RETURNING id",
            [site.device_id, message],
        ).fetchone()[0]


def _page(browser: requests.Session, site: ReplicaSite, path: str) -> requests.Response:
    return browser.get(path if path.startswith("http") else site.url(path), timeout=15)


def _alert_status(page: requests.Response) -> str:
    return re.search(r'id="alert-status">(\w+)<', page.text).group(1)


def test_list_and_detail_pages_read_the_replica(replica_site, replay_paused):
    browser = replica_site.login()
    name = f"Resident {uuid.uuid4().hex[:10]}"
    resident_id = _resident_insert(replica_site, name)

    listed = _page(browser, replica_site, "/console/records/residents/")
    detail = _page(browser, replica_site, f"/console/residents/{resident_id}/")

    # On the primary, not yet replayed on the replica: the pages do not know it.
    assert listed.status_code == 200
    assert name not in listed.text
    assert detail.status_code == 404

    replica_site.cluster.replay_resume()
    replica_site.cluster.wait_replicated()
    assert name in _page(browser, replica_site, "/console/records/residents/").text
    detail = _page(browser, replica_site, f"/console/residents/{resident_id}/")
    assert detail.status_code == 200
    assert name in detail.text


def test_the_page_after_a_console_action_reads_the_primary(replica_site):
    browser = replica_site.login()
    alert_id = _alert_insert(replica_site, "replica pin")
    replica_site.cluster.wait_replicated()
    replica_site.cluster.replay_pause()
    try:
        assert _alert_status(_page(browser, replica_site, f"/console/alerts/{alert_id}/")) == "open"

        acted = browser.post(
            replica_site.url(f"/console/alerts/{alert_id}/acknowledge/"),
            data={"csrfmiddlewaretoken": browser.cookies["csrftoken"], "note": "seen"},
            headers={"Referer": replica_site.url(f"/console/alerts/{alert_id}/")},
            allow_redirects=False,
            timeout=15,
        )
        assert acted.status_code == 302
        # The page the action leads to shows its outcome, though the replica has not replayed it.
        after = _page(browser, replica_site, acted.headers["Location"])
        assert _alert_status(after) == "acknowledged"
        assert f"Alert {alert_id} acknowledged." in after.text

        # Once the pin has run out, the replica's older view is back: it was the pin.
        time.sleep(PIN_SECONDS + 0.5)
        assert _alert_status(_page(browser, replica_site, f"/console/alerts/{alert_id}/")) == "open"
    finally:
        replica_site.cluster.replay_resume()
    replica_site.cluster.wait_replicated()
    assert _alert_status(_page(browser, replica_site, f"/console/alerts/{alert_id}/")) == "acknowledged"


def test_the_api_and_the_worker_write_the_primary_while_replay_is_paused(
    replica_site, replay_paused, broker_topology
):
    measured_at = datetime.now(UTC) - timedelta(minutes=5)
    body = {
        "readings": [
            {"metric": "replica_probe", "value": 1.5, "unit": "u", "measured_at": measured_at.isoformat()}
        ]
    }
    accepted = requests.post(
        replica_site.url("/api/v1/ingest/"),
        data=json.dumps(body),
        headers={"Content-Type": "application/json", "Authorization": f"Api-Key {replica_site.device_key}"},
        timeout=15,
    )
    assert accepted.status_code == 202, accepted.text

    worker = start_command_process(
        broker_topology, "consume_queue", DATABASE_URL=replica_site.cluster.primary_url
    )
    try:

        def stored_on_primary() -> bool:
            with replica_site.cluster.primary() as primary:
                return (
                    primary.execute(
                        "SELECT count(*) FROM sensor_readings WHERE metric = 'replica_probe'"
                    ).fetchone()[0]
                    == 1
                )

        assert wait_until(stored_on_primary, timeout=30)
    finally:
        stop_worker_process(worker)
    assert replica_site.cluster.on_replica(
        "SELECT count(*) FROM sensor_readings WHERE metric = 'replica_probe'"
    ) == [(0,)]


def test_the_overview_shows_the_lag_of_paused_replay(replica_site, replay_paused):
    browser = replica_site.login()
    _resident_insert(replica_site, "lag probe")
    time.sleep(1.1)  # the replica's last replayed commit is now at least this old

    overview = _page(browser, replica_site, "/console/")

    assert overview.status_code == 200
    lag = float(re.search(r'id="replica-lag">([\d.]+) s<', overview.text).group(1))
    assert lag >= 1
    assert re.search(r'id="replica-lag-bytes">([\d.]+)', overview.text).group(1) != "0"
    assert "replay paused" in overview.text
    assert "console pages read from the replica" in overview.text


def test_an_idle_primary_is_no_lag(replica_site):
    replica_site.cluster.wait_replicated()
    browser = replica_site.login()
    time.sleep(1.1)
    overview = _page(browser, replica_site, "/console/")
    assert re.search(r'id="replica-lag">([\d.]+) s<', overview.text).group(1) == "0.0"


def test_a_replica_too_far_behind_leaves_the_console_on_the_primary(replica_site):
    cluster = replica_site.cluster
    name = f"Resident {uuid.uuid4().hex[:10]}"
    with replica_site.other_web(DATABASE_REPLICA_MAX_LAG_SECONDS="1") as strict:
        browser = strict.login()
        cluster.wait_replicated()
        assert 'data-kind="replica-fallback"' not in _page(browser, strict, "/console/").text  # caught up
        cluster.replay_pause()
        try:
            _resident_insert(replica_site, name)
            time.sleep(1.5)  # the replica's last replayed commit is older than the bound now
            listed = _page(browser, strict, "/console/records/residents/")
            overview = _page(browser, strict, "/console/")
        finally:
            cluster.replay_resume()

    assert name in listed.text
    assert 'data-kind="replica-fallback"' in listed.text
    assert re.search(r"The read replica is \d+ s behind \(more than 1 s\)", overview.text)
    assert "console pages read from the primary" in overview.text


def test_a_page_whose_replica_read_fails_is_served_from_the_primary(replica_site):
    """Between two checks of the replica (cached here for a minute) it goes away: the page
    that finds out is read again from the primary, and the next check sees the replica down."""
    cluster = replica_site.cluster
    with replica_site.other_web(DATABASE_REPLICA_CHECK_SECONDS="60") as cached:
        browser = cached.login()
        assert "console pages read from the replica" in _page(browser, cached, "/console/").text
        cluster.replica_stop()
        try:
            name = f"Resident {uuid.uuid4().hex[:10]}"
            _resident_insert(replica_site, name)
            listed = _page(browser, cached, "/console/records/residents/")
            assert listed.status_code == 200
            assert name in listed.text
            assert 'data-kind="replica-fallback"' in _page(browser, cached, "/console/").text
        finally:
            cluster.script("start")
    cluster.wait_replicated()


def test_a_stopped_replica_leaves_the_console_on_the_primary_with_a_banner(replica_site):
    cluster = replica_site.cluster
    name = f"Resident {uuid.uuid4().hex[:10]}"
    cluster.replica_stop()
    try:
        resident_id = _resident_insert(replica_site, name)
        browser = replica_site.login()  # logging in never needed the replica

        for path in ("/console/", "/console/failed/", "/console/records/readings/", "/console/alerts/"):
            page = _page(browser, replica_site, path)
            assert page.status_code == 200, path
            assert 'data-kind="replica-fallback"' in page.text, path
        overview = _page(browser, replica_site, "/console/")
        assert "Console pages read from the primary database" in overview.text
        assert "console pages read from the primary" in overview.text
        # A row only the primary has (the replica stopped before it was written) is shown.
        assert name in _page(browser, replica_site, "/console/records/residents/").text
        assert _page(browser, replica_site, f"/console/residents/{resident_id}/").status_code == 200
    finally:
        cluster.script("start")  # the replica again, for the tests that follow in any order
    cluster.wait_replicated()
    assert wait_until(
        lambda: 'data-kind="replica-fallback"' not in _page(browser, replica_site, "/console/").text,
        timeout=20,
    )
