"""The real Caddy in front of the real gunicorn, over HTTPS with Caddy's local CA.

Caddy is the version the compose files pin, installed from the dev lock into the
virtualenv (``caddyserver``), so that these tests run the proxy production runs.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from ingest.services.devices import device_key_issue
from tests.factories import DeviceFactory
from tests.web import free_port, gunicorn_server, response_of
from tests.workers import PROJECT_ROOT, stop_worker_process, wait_until

CADDYFILE = Path(settings.BASE_DIR) / "Caddyfile"
CADDY = Path(sys.executable).parent / "caddy"
GUNICORN = Path(sys.executable).parent / "gunicorn"


def _caddy_env(tmp_path, **extra) -> dict:
    return {
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "DOMAIN": "localhost",
        **extra,
    }


@dataclass
class WebStack:
    web_port: int
    https_port: int
    tls: ssl.SSLContext

    def request(self, method, path, body=None, headers=None, *, direct=False, timeout=10):
        if direct:
            connection = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=timeout)
        else:
            connection = http.client.HTTPSConnection(
                "localhost", self.https_port, context=self.tls, timeout=timeout
            )
        return response_of(connection, method, path, body, headers)

    def open_connection(self, *, direct: bool) -> socket.socket:
        sock = socket.create_connection(
            ("127.0.0.1", self.web_port if direct else self.https_port), timeout=10
        )
        if direct:
            return sock
        return self.tls.wrap_socket(sock, server_hostname="localhost")


@contextmanager
def web_stack(tmp_path, topology, *, gunicorn_env: dict, caddy_env: dict | None = None) -> Iterator[WebStack]:
    """gunicorn with the project's gunicorn.conf.py, and Caddy with the project's Caddyfile."""
    https_port = free_port()
    assert CADDY.exists(), f"{CADDY} is missing: the dev lock installs Caddy (caddyserver)"
    with gunicorn_server(topology, workers=2, **gunicorn_env) as web_port:
        yield from _caddy_in_front(tmp_path, web_port, https_port, caddy_env)


@contextmanager
def caddy_running(tmp_path, **caddy_env: str) -> Iterator[Path]:
    """The project's Caddyfile run by the locked Caddy; yields its local CA's root certificate."""
    caddy = subprocess.Popen(
        [str(CADDY), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=_caddy_env(tmp_path, HTTP_PORT=str(free_port()), CADDY_ADMIN="off", **caddy_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    root_certificate = tmp_path / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    try:
        assert wait_until(root_certificate.exists, timeout=30), "Caddy made no local CA"
        yield root_certificate
    finally:
        stop_worker_process(caddy)


def _caddy_in_front(tmp_path, web_port: int, https_port: int, caddy_env: dict | None) -> Iterator[WebStack]:
    with caddy_running(
        tmp_path, HTTPS_PORT=str(https_port), UPSTREAM=f"127.0.0.1:{web_port}", **(caddy_env or {})
    ) as root_certificate:
        # Verified against Caddy's own CA, not ignored.
        stack = WebStack(web_port, https_port, ssl.create_default_context(cafile=str(root_certificate)))

        def healthy():
            try:
                return stack.request("GET", "/healthz")[0] == 200
            except OSError:
                return False

        assert wait_until(healthy, timeout=30), "the site did not come up through Caddy"
        yield stack


class SlowSenders:
    """Connections that declare a 100,000-byte body and send it one byte a second.

    With a device's key the API reads the body (an unauthenticated request is refused
    before that), which is what holds a web server's worker or thread.

    ``closed_after`` records, per connection, when the server closed it (seconds since
    the headers were sent), or stays None while it is still held open.
    """

    def __init__(
        self,
        open_connection: Callable[[], socket.socket],
        count: int,
        *,
        headers_only: bool = False,
        api_key: str = "",
    ):
        self.request_head = (
            "POST /api/v1/ingest/ HTTP/1.1\r\nHost: localhost\r\n"
            + (f"Authorization: Api-Key {api_key}\r\n" if api_key else "")
        ).encode()
        self.sockets = [open_connection() for _ in range(count)]
        self.closed_after: list[float | None] = [None] * count
        self._stop = threading.Event()
        self._headers_only = headers_only
        self._thread = threading.Thread(target=self._trickle, daemon=True)

    def __enter__(self) -> SlowSenders:
        self.started = time.monotonic()
        for sock in self.sockets:
            if self._headers_only:
                sock.sendall(self.request_head)
            else:
                sock.sendall(
                    self.request_head + b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
                )
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()

    def _trickle(self) -> None:
        while not self._stop.wait(1.0):
            for index, sock in enumerate(self.sockets):
                if self.closed_after[index] is not None:
                    continue
                try:
                    if _answered_or_closed(sock):
                        raise ConnectionError("closed by the server")
                    sock.sendall(b"X-Slow: 1\r\n" if self._headers_only else b" ")
                except OSError:
                    self.closed_after[index] = time.monotonic() - self.started


def _answered_or_closed(sock: socket.socket) -> bool:
    """Whether the server answered (408, 400…) or closed; TLS housekeeping such as session
    tickets makes a socket readable without either."""
    sock.setblocking(False)
    try:
        sock.recv(4096)  # data is an answer, b"" the end of the stream: either way, done
        return True
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    finally:
        sock.settimeout(10)


def probe_latencies(request: Callable[[], int], *, seconds: float) -> list[float]:
    """Call ``request`` repeatedly for ``seconds``; the time each took (inf if it failed)."""
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            ok = request() == 200
        except OSError:
            ok = False
        latencies.append(time.monotonic() - started if ok else float("inf"))
        time.sleep(0.3)
    return latencies


def assert_answered_promptly(latencies: list[float], what: str) -> None:
    """A pinned server never answers within the probe's timeout (inf); a busy machine (two
    cores shared by parallel test runs) only answers a few probes late."""
    assert float("inf") not in latencies, f"{what}: unanswered probes in {latencies}"
    assert statistics.median(latencies) < 0.5, f"{what}: {latencies}"


def test_the_caddyfile_is_valid(tmp_path):
    result = subprocess.run(
        [str(CADDY), "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=_caddy_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


def test_caddy_is_the_version_the_compose_files_run():
    import yaml

    version = subprocess.run([str(CADDY), "version"], capture_output=True, text=True, timeout=30).stdout
    for compose in (PROJECT_ROOT / "deploy" / "compose").glob("*.yml"):
        image = yaml.safe_load(compose.read_text())["services"]["caddy"]["image"]
        tag = image.split(":", 1)[1]
        assert version.startswith(f"v{tag}."), f"{compose.name} runs {image}, the tests run {version}"


@pytest.mark.usefixtures("committed_db")
def test_https_through_caddy_reaches_healthz_and_the_ingest_api(tmp_path, ingest_queue):
    _, key = device_key_issue(device=DeviceFactory())
    with web_stack(tmp_path, ingest_queue, gunicorn_env={"GUNICORN_WORKERS": "2"}) as stack:
        status, headers, body = stack.request("GET", "/healthz")
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
        status, _, body = stack.request(
            "POST",
            "/api/v1/ingest/",
            json.dumps(reading),
            {"Content-Type": "application/json", "Authorization": f"Api-Key {key}"},
        )
        assert status == 202, body
        status, _, answer = stack.request(
            "GET", f"/api/v1/ingest/{json.loads(body)['id']}/", None, {"Authorization": f"Api-Key {key}"}
        )
        assert status == 200 and json.loads(answer)["status"] == "pending", answer

        status, _, _ = stack.request(
            "POST",
            "/api/v1/ingest/",
            b"x" * (1024 * 1024 + 10),
            {"Content-Type": "application/json", "Authorization": f"Api-Key {key}"},
        )
        assert status == 413
        assert stack.request("GET", "/metrics")[0] == 404  # never through the proxy


def _healthz_through_caddy_with_slow_senders(tmp_path, topology, *, body_timeout: str) -> list[float]:
    """/healthz latencies through Caddy while 4 slow senders trickle bodies, with more
    senders than the web server (one worker, two threads) has threads."""
    _, key = device_key_issue(device=DeviceFactory())
    with web_stack(
        tmp_path,
        topology,
        gunicorn_env={"GUNICORN_WORKERS": "1", "GUNICORN_THREADS": "2"},
        caddy_env={"CADDY_READ_BODY_TIMEOUT": body_timeout},
    ) as stack:
        with SlowSenders(lambda: stack.open_connection(direct=False), 4, api_key=key):
            time.sleep(2)  # headers and the first bytes are in before the probing starts
            return probe_latencies(lambda: stack.request("GET", "/healthz", timeout=5)[0], seconds=8)


@pytest.mark.usefixtures("committed_db")
def test_slow_bodies_through_caddy_never_reach_the_web_server(tmp_path, ingest_queue):
    """Caddy holds the bodies (request_buffers) until they are whole, so gunicorn keeps
    answering everyone else at once. The body timeout is longer than the probing: no
    timeout frees a thread here, only the buffering protects it."""
    latencies = _healthz_through_caddy_with_slow_senders(tmp_path, ingest_queue, body_timeout="60s")
    assert_answered_promptly(latencies, "/healthz through Caddy, with 4 slow senders")


@pytest.mark.usefixtures("committed_db")
def test_what_caddy_does_at_the_body_timeout_does_not_pin_the_web_server(tmp_path, ingest_queue):
    """Probing runs past a short body timeout: whatever Caddy then passes on (it stops
    reading, and may forward a cut body) must not hold gunicorn's threads either."""
    latencies = _healthz_through_caddy_with_slow_senders(tmp_path, ingest_queue, body_timeout="4s")
    assert_answered_promptly(latencies, "/healthz through Caddy, past the body timeout")


@pytest.mark.usefixtures("committed_db")
def test_caddy_cuts_off_clients_that_send_their_headers_too_slowly(tmp_path, ingest_queue):
    with web_stack(
        tmp_path,
        ingest_queue,
        gunicorn_env={"GUNICORN_WORKERS": "1"},
        caddy_env={"CADDY_READ_HEADER_TIMEOUT": "2s"},
    ) as stack:
        with SlowSenders(lambda: stack.open_connection(direct=False), 3, headers_only=True) as slow_headers:
            wait_until(lambda: None not in slow_headers.closed_after, timeout=12, interval=0.5)
    assert all(after is not None and after < 6 for after in slow_headers.closed_after), (
        slow_headers.closed_after
    )


@pytest.mark.usefixtures("committed_db")
def test_slow_and_idle_clients_straight_at_gunicorn_do_not_stop_it(tmp_path, ingest_queue):
    """Defence in depth, should the web server ever be reached without the proxy: a slow
    body holds one thread and an idle socket at most one for a few seconds, so even if all
    of them land on one worker, its other threads still answer."""
    _, key = device_key_issue(device=DeviceFactory())
    with web_stack(tmp_path, ingest_queue, gunicorn_env={"GUNICORN_WORKERS": "2"}) as stack:
        idle = [stack.open_connection(direct=True) for _ in range(2)]
        try:
            with SlowSenders(lambda: stack.open_connection(direct=True), 4, api_key=key):
                time.sleep(2)
                latencies = probe_latencies(
                    lambda: stack.request("GET", "/healthz", direct=True, timeout=5)[0], seconds=6
                )
        finally:
            for sock in idle:
                sock.close()
    assert_answered_promptly(latencies, "/healthz straight at gunicorn, with slow and idle clients")
