"""Collection sources against a real HTTP server, the real broker and database."""

from __future__ import annotations

import ipaddress
import socket
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from ingest.messages import message_decode
from ingest.models import DeviceEvent, SensorReading
from scheduler.models import CollectionRun, CollectionSource
from scheduler.services.collection import sources_collect_due
from tests.broker import queue_depth, queued_messages
from tests.factories import DeviceFactory
from tests.workers import wait_until, worker_thread

pytestmark = pytest.mark.django_db


def _iso(minutes_ago: int = 1) -> str:
    return (timezone.now() - timedelta(minutes=minutes_ago)).isoformat()


def _source(url: str, **fields) -> CollectionSource:
    return CollectionSource.objects.create(
        name=fields.pop("name", "carelink"),
        url=url,
        device=fields.pop("device", None) or DeviceFactory(),
        **fields,
    )


GOOD = {
    "readings": [
        {"metric": "heart_rate", "value": 71, "unit": "bpm", "measured_at": _iso(2)},
        {"metric": "spo2", "value": 97, "measured_at": _iso(2)},
    ],
    "events": [{"event_type": "door_opened", "occurred_at": _iso(3)}],
}


def test_good_data_is_published_like_the_api_and_the_run_recorded(partner, ingest_queue):
    source = _source(partner.serve("/good", GOOD), auth_header="Authorization: Bearer s3cret")

    [run] = sources_collect_due()

    assert (run.status, run.fetched, run.published, run.rejected) == ("ok", 3, 3, 0)
    assert partner.headers["/good"]["Authorization"] == "Bearer s3cret"
    [(properties, body)] = queued_messages(ingest_queue.queue)
    batch = message_decode(body)
    assert batch.device_id == source.device_id
    assert [r["metric"] for r in batch.readings] == ["heart_rate", "spo2"]
    assert [e["event_type"] for e in batch.events] == ["door_opened"]
    source.refresh_from_db()
    assert source.last_run_at is not None


@pytest.mark.usefixtures("committed_db")
def test_collected_records_reach_the_customer_tables(partner, ingest_queue):
    source = _source(partner.serve("/good", GOOD))
    sources_collect_due()
    with worker_thread(ingest_queue):
        assert wait_until(lambda: SensorReading.objects.count() == 2 and DeviceEvent.objects.count() == 1)
    assert set(SensorReading.objects.values_list("device_id", flat=True)) == {source.device_id}


def test_invalid_records_are_rejected_with_reasons_and_the_rest_published(partner, ingest_queue):
    body = {
        "readings": [
            GOOD["readings"][0],
            {"metric": "Heart Rate", "value": "high", "measured_at": "yesterday"},
        ],
        "events": [{"event_type": "fall", "severity": 9, "occurred_at": _iso()}],
    }
    _source(partner.serve("/mixed", body))

    [run] = sources_collect_due()

    assert (run.status, run.fetched, run.published, run.rejected) == ("partial", 3, 1, 2)
    reading_rejection, event_rejection = run.rejections
    assert reading_rejection["kind"] == "reading" and reading_rejection["index"] == 1
    assert set(reading_rejection["errors"]) == {"metric", "value", "measured_at"}
    assert event_rejection["kind"] == "event" and "severity" in event_rejection["errors"]
    assert len(queued_messages(ingest_queue.queue)) == 1


@pytest.mark.parametrize(
    ("route", "status", "body", "delay", "error", "hits"),
    [
        ("/malformed", 200, b"<html>not json", 0, "not JSON", 1),
        ("/list", 200, b"[1, 2]", 0, "not a JSON object", 1),
        ("/boom", 500, b"{}", 0, "HTTP 500", 3),  # retried, then given up
        ("/forbidden", 403, b"{}", 0, "HTTP 403", 1),  # not retried
        # The timeout is one deadline for the whole fetch: a timed-out source is not asked again.
        ("/slow", 200, b"{}", 2.0, "timed out", 1),
    ],
)
def test_a_failing_source_is_recorded_and_publishes_nothing(
    partner, ingest_queue, route, status, body, delay, error, hits
):
    _source(partner.serve(route, body, status=status, delay=delay))

    [run] = sources_collect_due()

    assert run.status == "failed"
    assert error in run.error
    assert partner.hits[route] == hits
    assert queued_messages(ingest_queue.queue) == []


def test_one_failing_source_does_not_stop_the_others(partner, ingest_queue):
    _source(partner.serve("/boom", b"{}", status=500), name="a-broken")
    _source(partner.serve("/good", GOOD), name="b-good")

    runs = sources_collect_due()

    assert [(run.source.name, run.status) for run in runs] == [("a-broken", "failed"), ("b-good", "ok")]
    assert CollectionRun.objects.count() == 2


def test_only_due_and_enabled_sources_are_collected(partner, ingest_queue):
    now = timezone.now()
    url = partner.serve("/good", GOOD)
    _source(url, name="due", interval_seconds=60, last_run_at=now - timedelta(seconds=61))
    _source(url, name="not-yet", interval_seconds=60, last_run_at=now - timedelta(seconds=30))
    _source(url, name="disabled", is_enabled=False)
    assert [run.source.name for run in sources_collect_due(now=now)] == ["due"]


def test_a_retired_device_source_fails_without_fetching(partner, ingest_queue):
    _source(partner.serve("/good", GOOD), device=DeviceFactory(status="retired"))
    [run] = sources_collect_due()
    assert run.status == "failed" and "retired" in run.error
    assert "/good" not in partner.hits


def test_broker_down_fails_the_run(partner, ingest_queue, settings):
    from ingest.broker.publisher import publisher_reset

    _source(partner.serve("/good", GOOD))
    port = settings.RABBITMQ_PORT
    settings.RABBITMQ_PORT = 1
    publisher_reset()
    try:
        [run] = sources_collect_due()
    finally:
        settings.RABBITMQ_PORT = port
        publisher_reset()
    assert run.status == "failed" and "broker" in run.error


@pytest.mark.usefixtures("committed_db")
def test_a_feed_answering_the_same_records_again_stores_them_once(partner, ingest_queue):
    source = _source(partner.serve("/same", GOOD), interval_seconds=1)
    sources_collect_due()
    with worker_thread(ingest_queue):
        assert wait_until(lambda: DeviceEvent.objects.count() == 1)
    [second] = sources_collect_due(now=timezone.now() + timedelta(seconds=5))
    assert (second.status, second.fetched, second.published) == ("ok", 3, 0)
    assert queue_depth(ingest_queue.queue) == 0
    assert DeviceEvent.objects.filter(device=source.device).count() == 1


# --- redirects, private addresses, deadlines --------------------------------------------

AUTH = "Authorization: Bearer s3cret"


@pytest.mark.parametrize(
    ("auth_header", "name"), [(AUTH, "Authorization"), ("X-Api-Key: k-123", "X-Api-Key")]
)
def test_credentials_follow_a_redirect_within_the_origin_only(
    partner, other_partner, ingest_queue, auth_header, name
):
    feed = other_partner.serve("/feed", GOOD)
    partner.redirect("/moved", feed)
    _source(partner.redirect("/start", partner.url + "/moved"), auth_header=auth_header)

    [run] = sources_collect_due()

    assert run.status == "ok", run.error
    assert partner.headers["/moved"][name] == auth_header.partition(":")[2].strip()  # same origin
    assert name not in other_partner.headers["/feed"]  # another port is another origin
    assert len(queued_messages(ingest_queue.queue)) == 1


def test_credentials_are_not_sent_again_when_the_chain_comes_back(partner, other_partner, ingest_queue):
    feed = partner.serve("/feed", GOOD)
    hop = other_partner.redirect("/hop", feed)
    _source(partner.redirect("/start", hop), auth_header=AUTH)
    [run] = sources_collect_due()
    assert run.status == "ok", run.error
    assert "Authorization" in partner.headers["/start"]
    assert "Authorization" not in other_partner.headers["/hop"]
    assert "Authorization" not in partner.headers["/feed"]


def test_a_redirect_from_https_to_http_arrives_without_credentials(tls_partner, partner, ingest_queue):
    feed = partner.serve("/feed", GOOD)
    _source(tls_partner.redirect("/start", feed), auth_header=AUTH)

    [run] = sources_collect_due()

    assert run.status == "ok", run.error
    assert tls_partner.headers["/start"]["Authorization"] == "Bearer s3cret"  # over TLS, as configured
    assert "Authorization" not in partner.headers["/feed"]


def test_loopback_is_refused_unless_allowed(partner, ingest_queue, settings):
    settings.COLLECTION_ALLOWED_PRIVATE_NETWORKS = []
    url = partner.serve("/good", GOOD)
    _source(url, name="by-address")
    _source(url.replace("127.0.0.1", "localhost"), name="by-name")  # refused after DNS resolution

    runs = sources_collect_due()

    assert [run.status for run in runs] == ["failed", "failed"]
    for run in runs:
        assert "127.0.0.1 is a loopback address" in run.error
        assert "COLLECTION_ALLOWED_PRIVATE_NETWORKS" in run.error
    assert partner.hits == {}
    assert queued_messages(ingest_queue.queue) == []


def test_a_redirect_to_a_loopback_address_that_is_not_allowed_is_refused(
    partner_on_127_0_0_2, partner, ingest_queue, settings
):
    settings.COLLECTION_ALLOWED_PRIVATE_NETWORKS = ["127.0.0.2/32"]  # the partner, not the rest of lo
    internal = partner.serve("/api/overview", {"rabbitmq": "management"})
    _source(partner_on_127_0_0_2.redirect("/start", internal), auth_header=AUTH)

    [run] = sources_collect_due()

    assert run.status == "failed"
    assert "127.0.0.1 is a loopback address" in run.error
    assert partner_on_127_0_0_2.hits == {"/start": 1}
    assert partner.hits == {}


def test_the_connection_goes_to_the_address_that_was_checked(
    partner_on_127_0_0_2, partner, ingest_queue, settings, monkeypatch
):
    """DNS rebinding: a second lookup answering a forbidden address must never be used."""
    settings.COLLECTION_ALLOWED_PRIVATE_NETWORKS = ["127.0.0.2/32"]
    port = partner_on_127_0_0_2.httpd.server_address[1]
    partner_on_127_0_0_2.serve("/feed", GOOD)
    # The same port on 127.0.0.1: what a rebound name would reach.
    forbidden = PartnerServerOnPort(port)
    real_getaddrinfo = socket.getaddrinfo
    answers = iter(["127.0.0.2"])

    def rebinding_resolver(host, *args, **kwargs):
        if host == "partner.test":
            address = next(answers, "127.0.0.1")  # first answer allowed, every later one not
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_resolver)
    try:
        _source(f"http://partner.test:{port}/feed")
        [run] = sources_collect_due()
    finally:
        forbidden.close()
    assert run.status == "ok", run.error
    assert partner_on_127_0_0_2.hits == {"/feed": 1}
    assert partner_on_127_0_0_2.headers["/feed"]["Host"] == f"partner.test:{port}"
    assert forbidden.connections == 0


class PartnerServerOnPort:
    """Listens on 127.0.0.1:<port> and only counts connections."""

    def __init__(self, port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", port))
        self.listener.settimeout(0)
        self.connections = 0

    def close(self) -> None:
        try:
            while True:
                self.listener.accept()[0].close()
                self.connections += 1
        except (BlockingIOError, OSError):
            pass
        self.listener.close()


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("100.64.0.1", "not a globally routable"),  # carrier-grade NAT
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff0e::1", "multicast"),  # global-scope multicast, which is_global calls global
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("192.88.99.1", "6to4 relay anycast"),
        ("192.0.0.9", "IETF protocol assignment"),
        ("fec0::1", "site-local"),
        ("3fff::1", "documentation"),
        # IPv6 addresses that carry an IPv4 address are judged by that address too.
        ("::127.0.0.1", "stands for 127.0.0.1, a loopback"),  # IPv4-compatible, ::/96
        ("::ffff:0:7f00:1", "stands for 127.0.0.1, a loopback"),  # SIIT, ::ffff:0:0:0/96
        ("64:ff9b::7f00:1", "stands for 127.0.0.1, a loopback"),  # NAT64 well-known prefix
        ("64:ff9b::a00:1", "stands for 10.0.0.1, a private"),
        ("64:ff9b:1::a00:1", "local-use NAT64"),  # where the IPv4 address sits is the network's choice
        ("2002:7f00:1::1", "stands for 127.0.0.1, a loopback"),  # 6to4
        ("2002:a9fe:a9fe::1", "stands for 169.254.169.254, a link-local"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "stands for 127.0.0.1, a loopback"),  # Teredo client
        ("2001:0:7f00:1:8000:63bf:a2c9:17dd", "stands for 127.0.0.1, a loopback"),  # Teredo server
        ("2001:0:4136:e378:8000:63bf:a2c9:17dd", "private"),  # Teredo between public addresses
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
        # The same forms of a public IPv4 address reach a public host.
        ("::ffff:93.184.216.34", None),
        ("64:ff9b::5db8:d822", None),  # what DNS64 answers on an IPv6-only network
        ("2002:5db8:d822::1", None),
    ],
)
def test_which_addresses_are_refused(address, refused):
    from scheduler.services.outbound_http import address_refusal

    reason = address_refusal(ipaddress.ip_address(address))
    if refused is None:
        assert reason is None
    else:
        assert refused in reason


@pytest.mark.parametrize(
    ("address", "allowed", "refused"),
    [
        ("10.1.2.3", "10.0.0.0/8", False),
        ("10.1.2.3", "192.168.0.0/16", True),
        ("::ffff:127.0.0.1", "127.0.0.0/8", False),
        ("fd00::5", "fd00::/8", False),
        # An allowed network also admits the IPv6 forms that stand for its addresses...
        ("::ffff:10.0.0.5", "10.0.0.0/8", False),
        ("64:ff9b::a00:5", "10.0.0.0/8", False),
        ("2002:a00:5::1", "10.0.0.0/8", False),
        # ...but not those of other private addresses,
        ("64:ff9b::7f00:1", "10.0.0.0/8", True),
        # and a tunnel whose IPv6 address is itself not public needs that allowed as well.
        ("2001:0:4136:e378:8000:63bf:f5ff:fffa", "10.0.0.0/8", True),  # Teredo client 10.0.0.5
    ],
)
def test_an_allowed_network_lets_its_private_addresses_through(address, allowed, refused):
    from scheduler.services.outbound_http import address_refusal

    reason = address_refusal(ipaddress.ip_address(address), [ipaddress.ip_network(allowed)])
    assert (reason is not None) == refused


def test_a_trickling_source_is_cut_at_the_deadline_and_the_others_still_collected(
    partner, ingest_queue, settings
):
    settings.COLLECTION_TIMEOUT_SECONDS = 1.0
    _source(partner.trickle("/trickle", GOOD, every=0.05), name="a-trickling")  # ~20 s at that pace
    _source(partner.serve("/good", GOOD), name="b-good")

    started = time.monotonic()
    runs = sources_collect_due()
    elapsed = time.monotonic() - started

    assert [(run.source.name, run.status) for run in runs] == [("a-trickling", "failed"), ("b-good", "ok")]
    assert "timed out after 1 s" in runs[0].error
    assert partner.hits["/trickle"] == 1  # the deadline covers retries too
    assert elapsed < settings.COLLECTION_TIMEOUT_SECONDS + 1.0, elapsed


def test_a_resolver_that_does_not_answer_is_cut_at_the_deadline(ingest_queue, settings, monkeypatch):
    settings.COLLECTION_TIMEOUT_SECONDS = 1.0
    real_getaddrinfo = socket.getaddrinfo

    def hanging_resolver(host, *args, **kwargs):
        if host == "slow-dns.test":
            time.sleep(5)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging_resolver)
    _source("http://slow-dns.test/feed")
    started = time.monotonic()
    [run] = sources_collect_due()
    assert run.status == "failed" and "timed out" in run.error
    assert time.monotonic() - started < settings.COLLECTION_TIMEOUT_SECONDS + 1.0


@pytest.mark.parametrize("announced", [True, False])
def test_an_answer_over_the_size_limit_is_refused(partner, ingest_queue, settings, announced):
    settings.COLLECTION_MAX_RESPONSE_BYTES = 100
    body = {"readings": [GOOD["readings"][0]] * 5}
    # http.server answers without a Content-Length; the trickling route announces one.
    url = partner.trickle("/big", body, every=0) if announced else partner.serve("/big", body)
    _source(url)
    [run] = sources_collect_due()
    assert run.status == "failed"
    assert "100" in run.error and ("over the limit" in run.error or "larger than" in run.error)
    assert queued_messages(ingest_queue.queue) == []


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/feed", "file:///etc/passwd"])
def test_only_http_and_https_are_fetched(ingest_queue, url):
    _source(url)
    [run] = sources_collect_due()
    assert run.status == "failed" and "only http and https" in run.error
