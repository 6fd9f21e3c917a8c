"""The product scaled out on one host: two web servers and three workers side by side.

Two gunicorn servers (each on its own port, as two web hosts behind the proxy would be)
and three ``consume_queue`` processes run against the real PostgreSQL, RabbitMQ and
Redis, on this run's queues and cache prefix, with one PROMETHEUS_MULTIPROC_DIR for all
five. What must be shared is checked over real HTTP: a device's rate limit, console
sessions, the metrics' totals; and every reading is stored exactly once while the
workers share the queue, even when one of them is killed mid-stream.

The second web server starts after the workers, as a web restart during a deploy would:
a server that emptied the shared metrics folder at start would hide every running
process's counts from then on.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
import redis
from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from ingest.broker.topology import Topology
from ingest.models import DeviceEvent, IngestMessage, SensorReading
from ingest.services.devices import device_key_issue
from tests.broker import _management_request, management_api_available
from tests.factories import DeviceFactory, UserFactory
from tests.web import gunicorn_server, http_request
from tests.workers import start_command_process, stop_worker_process, wait_until

pytestmark = [
    pytest.mark.usefixtures("committed_db"),
    pytest.mark.skipif(not management_api_available(), reason="needs RabbitMQ's management API"),
]

DEVICE_RATE_LIMIT = 10
WORKER_COUNT = 3


@dataclass
class ScaledOut:
    topology: Topology
    web_ports: list[int]
    workers: list[subprocess.Popen]
    metrics_dir: Path
    log_dir: Path
    cache_key_prefix: str

    def start_worker(self) -> subprocess.Popen:
        log_file = self.log_dir / f"worker-{uuid.uuid4().hex[:8]}.log"
        worker = start_command_process(
            self.topology,
            "consume_queue",
            "--batch-size",
            "20",
            log_file=log_file,
            PROMETHEUS_MULTIPROC_DIR=str(self.metrics_dir),
        )
        self.workers.append(worker)
        return worker


@pytest.fixture(scope="module")
def scaled_out(django_db_setup, django_db_blocker, broker_topology, tmp_path_factory) -> Iterator[ScaledOut]:
    metrics_dir = tmp_path_factory.mktemp("metrics")
    cache_key_prefix = f"{settings.CACHES['default'].get('KEY_PREFIX', 'test')}-{uuid.uuid4().hex[:8]}"
    web_env = {
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "TEST_INGEST_DEVICE_RATE": f"{DEVICE_RATE_LIMIT}/minute",
        # One prefix for both servers, as one Redis serves every web host in production.
        "TEST_CACHE_KEY_PREFIX": cache_key_prefix,
    }
    cluster = ScaledOut(
        broker_topology, [], [], metrics_dir, tmp_path_factory.mktemp("logs"), cache_key_prefix
    )
    with django_db_blocker.unblock(), ExitStack() as stack:
        cluster.web_ports.append(stack.enter_context(gunicorn_server(broker_topology, workers=2, **web_env)))
        for _ in range(WORKER_COUNT):
            cluster.start_worker()
        stack.callback(lambda: [stop_worker_process(worker) for worker in cluster.workers])
        cluster.web_ports.append(stack.enter_context(gunicorn_server(broker_topology, workers=2, **web_env)))
        stack.callback(_cache_keys_delete, f"{cache_key_prefix}:*")  # rate logs, refusal trails
        assert wait_until(lambda: len(_consumer_pids(broker_topology.queue)) == WORKER_COUNT, timeout=60)
        yield cluster


def _cache_keys_delete(pattern: str) -> None:
    client = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    try:
        for key in client.scan_iter(pattern):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture(autouse=True)
def no_device_counted_yet(scaled_out):
    """Each test's devices start with an empty rate log: device ids start again at 1 in
    every test (the customer's tables are truncated), while the servers' Redis prefix stays."""
    _cache_keys_delete(f"{scaled_out.cache_key_prefix}:*rate:device:*")


def _consumer_pids(queue: str) -> list[int]:
    """The pids of the processes consuming ``queue``, from RabbitMQ's management API.

    A consumer names its channel's connection; each connection's client-given name says
    which process holds it (``iot_care worker pid=<pid>``).
    """
    vhost = quote(settings.RABBITMQ_VHOST, safe="")
    details = (
        _management_request("GET", f"queues/{vhost}/{quote(queue, safe='')}").get("consumer_details") or []
    )
    names = {
        connection["name"]: (connection.get("client_properties") or {}).get("connection_name") or ""
        for connection in _management_request("GET", "connections") or []
    }
    pids = []
    for consumer in details:
        # Until the broker's next statistics round a new consumer's channel details are empty.
        channel = consumer.get("channel_details") or {}
        match = re.search(r"pid=(\d+)", names.get(channel.get("connection_name"), ""))
        if match:
            pids.append(int(match.group(1)))
    return pids


def _unacked_of(pid: int) -> int:
    """Messages delivered to the process ``pid`` and not yet acknowledged (the broker's view)."""
    names = {
        connection["name"]: (connection.get("client_properties") or {}).get("connection_name") or ""
        for connection in _management_request("GET", "connections") or []
    }
    return sum(
        channel.get("messages_unacknowledged", 0)
        for channel in _management_request("GET", "channels") or []
        if f"pid={pid}" in names.get((channel.get("connection_details") or {}).get("name"), "")
    )


def _device_with_key() -> tuple[int, dict[str, str]]:
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    return device.id, {"Content-Type": "application/json", "Authorization": f"Api-Key {key}"}


def _body(number: int, readings: int = 1) -> str:
    """``readings`` readings and one event numbered ``number`` (events have no unique
    constraint, so a message stored twice shows as an extra event)."""
    at = timezone.now() - timedelta(hours=1) + timedelta(milliseconds=number * readings)
    return json.dumps(
        {
            "readings": [
                {
                    "metric": "heart_rate",
                    "value": 70,
                    "measured_at": (at + timedelta(microseconds=n)).isoformat(),
                }
                for n in range(readings)
            ],
            "events": [{"event_type": "motion", "occurred_at": at.isoformat(), "detail": {"number": number}}],
        }
    )


def _pipeline_state(scaled_out: ScaledOut) -> str:
    """What to look at when accepted messages were not stored in time."""
    vhost = quote(settings.RABBITMQ_VHOST, safe="")
    queues = {
        name: {key: details.get(key) for key in ("messages_ready", "messages_unacknowledged", "consumers")}
        for name in (scaled_out.topology.queue, scaled_out.topology.dead_queue)
        for details in [_management_request("GET", f"queues/{vhost}/{quote(name, safe='')}") or {}]
    }
    statuses = dict(IngestMessage.objects.values_list("status").annotate(count=Count("pk")).order_by())
    logs = "\n".join(
        f"--- {log.name}\n{log.read_text()[-1500:]}" for log in sorted(scaled_out.log_dir.glob("*.log"))
    )
    alive = [worker.pid for worker in scaled_out.workers if worker.poll() is None]
    return f"ledger {statuses}; queues {queues}; workers alive {alive}\n{logs}"


# The ids of the messages the servers accepted (202) in the running test.
_accepted_ids: list[str] = []


def _ingest_post(port: int, body: str, headers: dict) -> int:
    status, _, answer = http_request(port, "POST", "/api/v1/ingest/", body, headers)
    if status == 202:
        _accepted_ids.append(json.loads(answer)["id"])  # list.append: safe from the posting threads
    return status


def _post_alternately(ports: list[int], headers: dict, count: int, start: int = 0) -> list[int]:
    """``count`` posts of one device, one after another, on each port in turn."""
    return [
        _ingest_post(ports[number % len(ports)], _body(start + number), headers) for number in range(count)
    ]


def _processed() -> int:
    return IngestMessage.objects.filter(status=IngestMessage.Status.PROCESSED).count()


def _unprocessed(message_ids: list[str]) -> int:
    processed = IngestMessage.objects.filter(
        message_id__in=message_ids, status=IngestMessage.Status.PROCESSED
    )
    return len(set(message_ids)) - processed.count()


@pytest.fixture(autouse=True)
def every_accepted_message_stored_before_the_next_test(committed_db, scaled_out):
    """The workers outlive each test, and the customer's tables restart their ids after it:
    a message still in flight when a test ends would fail on its deleted device, be
    retried, and then be stored under the next test's device that got the same id,
    counted among that test's messages and metrics. So each test waits, before its tables
    are emptied, until every message it had accepted is stored."""
    _accepted_ids.clear()
    yield
    assert wait_until(lambda: _unprocessed(_accepted_ids) == 0, timeout=60), (
        f"{_unprocessed(_accepted_ids)} of the {len(_accepted_ids)} accepted not stored; "
        + _pipeline_state(scaled_out)
    )


# --- rate limit -------------------------------------------------------------------------


def test_a_devices_rate_limit_is_shared_by_both_web_servers(scaled_out):
    _, headers = _device_with_key()

    statuses = _post_alternately(scaled_out.web_ports, headers, 3 * DEVICE_RATE_LIMIT)

    # One limit for the device, not one per server (which would let 2 × the limit through).
    assert statuses.count(202) == DEVICE_RATE_LIMIT, statuses
    assert statuses.count(429) == 2 * DEVICE_RATE_LIMIT, statuses
    # Both servers took part: each accepted some of the device's requests and refused others.
    for parity in (0, 1):
        assert {202, 429} == set(statuses[parity::2]), statuses


def test_two_web_servers_that_count_in_separate_stores_let_twice_the_limit_through(scaled_out):
    """The failure the shared count prevents, and the check above would catch: a server that
    counts on its own (here: its own key prefix) admits the device's rate once more."""
    _, headers = _device_with_key()
    separate_prefix = f"{scaled_out.cache_key_prefix}-separate"
    try:
        with gunicorn_server(
            scaled_out.topology,
            workers=1,
            TEST_INGEST_DEVICE_RATE=f"{DEVICE_RATE_LIMIT}/minute",
            TEST_CACHE_KEY_PREFIX=separate_prefix,
            PROMETHEUS_MULTIPROC_DIR=str(scaled_out.metrics_dir),
        ) as separate_port:
            statuses = _post_alternately(
                [scaled_out.web_ports[0], separate_port], headers, 3 * DEVICE_RATE_LIMIT
            )
    finally:
        _cache_keys_delete(f"{separate_prefix}:*")

    assert statuses.count(202) == 2 * DEVICE_RATE_LIMIT, statuses


# --- console sessions -----------------------------------------------------------------


def _log_in(port: int, username: str, password: str) -> tuple[int, str | None]:
    """The console's login form on ``port``: (status, session cookie or None)."""
    _, headers, page = http_request(port, "GET", "/console/login/")
    csrf_cookie = re.search(r"csrftoken=([^;]+)", headers["set-cookie"]).group(1)
    csrf_form = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
    status, headers, _ = http_request(
        port,
        "POST",
        "/console/login/",
        urlencode({"username": username, "password": password, "csrfmiddlewaretoken": csrf_form}),
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf_cookie}",
            "Referer": f"http://127.0.0.1:{port}/console/login/",
        },
    )
    session = re.search(r"sessionid=([^;]+)", headers.get("set-cookie", ""))
    return status, session.group(1) if session else None


def _console_page(port: int, session: str) -> tuple[int, str]:
    status, headers, _ = http_request(port, "GET", "/console/", headers={"Cookie": f"sessionid={session}"})
    return status, headers.get("location", "")


def _log_out(port: int, session: str) -> int:
    """Django's logout is a POST with the CSRF token of a page the session was shown."""
    _, headers, page = http_request(port, "GET", "/console/", headers={"Cookie": f"sessionid={session}"})
    csrf_cookie = re.search(r"csrftoken=([^;]+)", headers["set-cookie"]).group(1)
    csrf_form = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
    return http_request(
        port,
        "POST",
        "/console/logout/",
        urlencode({"csrfmiddlewaretoken": csrf_form}),
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"sessionid={session}; csrftoken={csrf_cookie}",
            "Referer": f"http://127.0.0.1:{port}/console/",
        },
    )[0]


def test_a_console_session_made_on_one_web_server_works_on_the_other_until_logged_out(scaled_out):
    web_a, web_b = scaled_out.web_ports
    UserFactory(username="nadia")

    status, session = _log_in(web_a, "nadia", "console-pw-1")
    assert status == 302 and session

    assert _console_page(web_b, session)[0] == 200
    assert _console_page(web_a, session)[0] == 200

    assert _log_out(web_b, session) == 302
    for port in (web_a, web_b):
        status, location = _console_page(port, session)
        assert status == 302 and location.startswith("/console/login/"), (port, status, location)


def test_a_failed_login_on_one_web_server_gives_no_session_on_either(scaled_out):
    web_a, web_b = scaled_out.web_ports
    UserFactory(username="omar")

    status, session = _log_in(web_a, "omar", "not-the-password")

    assert status == 200 and session is None
    made_up = uuid.uuid4().hex
    for port in (web_a, web_b):
        assert _console_page(port, made_up)[0] == 302


# --- metrics --------------------------------------------------------------------------


def _scrape(port: int) -> dict[str, float]:
    """/metrics of one web server: every sample by ``name{labels}``."""
    status, _, body = http_request(port, "GET", "/metrics")
    assert status == 200, body
    return {
        f"{sample.name}{json.dumps(sample.labels, sort_keys=True)}": sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def _accepted(samples: dict[str, float]) -> float:
    return samples.get('iot_care_ingest_requests_total{"outcome": "accepted"}', 0.0)


def _consumed(samples: dict[str, float]) -> float:
    return sum(
        value for name, value in samples.items() if name.startswith("iot_care_messages_consumed_total{")
    )


def _consumed_by(pid: int, metrics_dir: Path) -> float:
    """Messages one worker counted, from its own file in the shared folder."""
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    with tempfile.TemporaryDirectory() as own:
        for file in metrics_dir.glob(f"counter_{pid}.db"):
            (Path(own) / file.name).write_bytes(file.read_bytes())
        MultiProcessCollector(registry, path=own)
        families = list(registry.collect())
    return sum(
        sample.value
        for family in families
        if family.name == "iot_care_messages_consumed"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def test_metrics_on_either_web_server_add_up_all_five_processes(scaled_out):
    web_a, web_b = scaled_out.web_ports
    before = {port: _scrape(port) for port in (web_a, web_b)}
    workers_before = {
        worker.pid: _consumed_by(worker.pid, scaled_out.metrics_dir) for worker in scaled_out.workers
    }
    processed_before = _processed()
    devices = [_device_with_key()[1] for _ in range(4)]
    posts = 4 * DEVICE_RATE_LIMIT

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = [
            status
            for answers in pool.map(
                lambda index: _post_alternately(
                    scaled_out.web_ports, devices[index], DEVICE_RATE_LIMIT, start=index * 1000
                ),
                range(4),
            )
            for status in answers
        ]
    assert statuses == [202] * posts
    assert wait_until(lambda: _unprocessed(_accepted_ids) == 0, timeout=60), _pipeline_state(scaled_out)
    assert _processed() - processed_before == posts  # and nothing else (no earlier test's message)

    # Each server accepted half the requests and no process consumed them all, yet each
    # server reports the totals of all of them.
    for port in (web_a, web_b):
        assert wait_until(
            lambda port=port: _consumed(_scrape(port)) - _consumed(before[port]) == posts, timeout=10
        )
        after = _scrape(port)
        assert _accepted(after) - _accepted(before[port]) == posts, port
    by_worker = {
        pid: _consumed_by(pid, scaled_out.metrics_dir) - workers_before[pid] for pid in workers_before
    }
    assert sum(by_worker.values()) == posts, by_worker
    assert max(by_worker.values()) < posts, by_worker


# --- workers --------------------------------------------------------------------------


def test_every_worker_has_a_consumer_on_the_main_queue(scaled_out):
    live = [worker.pid for worker in scaled_out.workers if worker.poll() is None]
    assert len(live) == WORKER_COUNT
    assert wait_until(
        lambda: sorted(_consumer_pids(scaled_out.topology.queue)) == sorted(live), timeout=20
    ), (
        _consumer_pids(scaled_out.topology.queue),
        live,
    )


def test_readings_are_stored_exactly_once_when_a_worker_is_killed_mid_stream(scaled_out):
    """A worker frozen with messages in hand, then killed: the broker gives them to the others.

    Each device posts its limit's worth in three parts: before the freeze, while the worker
    is frozen (the broker still sends it its share, which it never acknowledges), and after
    the kill.
    """
    devices = [_device_with_key() for _ in range(12)]
    readings_per_post = 5
    victim = next(worker for worker in scaled_out.workers if worker.poll() is None)
    processed_before = _processed()
    statuses: list[int] = []

    def post_part(numbers: range) -> None:
        def post_device(index: int) -> list[int]:
            return [
                _ingest_post(
                    scaled_out.web_ports[number % 2],
                    _body(index * 1000 + number, readings=readings_per_post),
                    devices[index][1],
                )
                for number in numbers
            ]

        with ThreadPoolExecutor(max_workers=len(devices)) as pool:
            statuses.extend(
                status for answers in pool.map(post_device, range(len(devices))) for status in answers
            )

    post_part(range(0, 3))
    os.kill(victim.pid, signal.SIGSTOP)
    try:
        post_part(range(3, 7))
        assert wait_until(lambda: _unacked_of(victim.pid) > 0, timeout=30), "the frozen worker held nothing"
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        scaled_out.workers.remove(victim)
        replacement = scaled_out.start_worker()  # the next tests find three workers again
    post_part(range(7, DEVICE_RATE_LIMIT))

    posts = len(devices) * DEVICE_RATE_LIMIT
    assert statuses == [202] * posts
    assert wait_until(lambda: _processed() - processed_before == posts, timeout=120), _processed()
    for device_id, _ in devices:
        assert (
            SensorReading.objects.filter(device_id=device_id).count() == DEVICE_RATE_LIMIT * readings_per_post
        )
        events = DeviceEvent.objects.filter(device_id=device_id)
        assert events.count() == DEVICE_RATE_LIMIT  # none stored twice
        assert len({event.detail["number"] for event in events}) == DEVICE_RATE_LIMIT  # none lost
    assert wait_until(lambda: replacement.pid in _consumer_pids(scaled_out.topology.queue), timeout=30)
