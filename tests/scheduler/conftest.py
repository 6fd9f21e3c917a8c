"""A partner system on loopback: an HTTP(S) server the test controls."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Route:
    status: int = 200
    body: bytes = b"{}"
    delay: float = 0.0
    location: str | None = None
    trickle_every: float | None = None  # send the whole answer one byte at a time


class PartnerServer:
    def __init__(self, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        self.headers: dict[str, dict] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                server.headers[self.path] = dict(self.headers)
                route = server.routes.get(self.path, Route(status=404))
                time.sleep(route.delay)
                try:
                    if route.trickle_every is not None:
                        self._trickle(route)
                        return
                    self.send_response(route.status)
                    self.send_header("Content-Type", "application/json")
                    if route.location:
                        self.send_header("Location", route.location)
                    self.end_headers()
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def _trickle(self, route: Route) -> None:
                answer = (
                    f"HTTP/1.1 {route.status} OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(route.body)}\r\nConnection: close\r\n\r\n"
                ).encode() + route.body
                for index in range(len(answer)):
                    self.wfile.write(answer[index : index + 1])
                    self.wfile.flush()
                    time.sleep(route.trickle_every)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://{host}:{self.httpd.server_address[1]}"

    def serve(self, path: str, body, *, status: int = 200, delay: float = 0.0) -> str:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.routes[path] = Route(status=status, body=raw, delay=delay)
        return self.url + path

    def redirect(self, path: str, location: str, *, status: int = 302) -> str:
        self.routes[path] = Route(status=status, body=b"", location=location)
        return self.url + path

    def trickle(self, path: str, body, *, every: float) -> str:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.routes[path] = Route(body=raw, trickle_every=every)
        return self.url + path


def _running(server: PartnerServer):
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    return server


def _stop(server: PartnerServer) -> None:
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def partner():
    server = _running(PartnerServer())
    yield server
    _stop(server)


@pytest.fixture
def other_partner():
    """A second server: another origin (another port) on the same loopback address."""
    server = _running(PartnerServer())
    yield server
    _stop(server)


@pytest.fixture
def partner_on_127_0_0_2():
    """A partner on another loopback address, so that one can be allowed and 127.0.0.1 not."""
    server = _running(PartnerServer(host="127.0.0.2"))
    yield server
    _stop(server)


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and localhost: (certificate file, key file)."""
    folder = tmp_path_factory.mktemp("tls")
    certificate, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", key, "-out", certificate, "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return certificate, key


@pytest.fixture
def tls_partner(tls_certificate, monkeypatch):
    """A partner over HTTPS whose certificate the collector trusts (through SSL_CERT_FILE)."""
    certificate, key = tls_certificate
    monkeypatch.setenv("SSL_CERT_FILE", certificate)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    server = _running(PartnerServer(tls=context))
    yield server
    _stop(server)
