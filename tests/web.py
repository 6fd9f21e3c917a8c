"""The real web tier from tests: gunicorn with several workers on this run's database and queues."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ingest.broker.topology import Topology
from tests.workers import PROJECT_ROOT, stop_worker_process, wait_until, worker_environment


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_request(
    port: int, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    return response_of(connection, method, path, body, headers)


def response_of(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: dict | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on ``connection`` (plain or TLS): status, lower-cased headers, body; then closed."""
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return (
            response.status,
            {name.lower(): value for name, value in response.getheaders()},
            response.read(),
        )
    finally:
        connection.close()


@contextmanager
def gunicorn_server(topology: Topology, *, workers: int, **extra_env: str) -> Iterator[int]:
    """gunicorn (``gunicorn.conf.py``) on a free loopback port; yields the port, stops it after."""
    port = free_port()
    # Its output goes to a file, not a pipe: a pipe nobody reads fills after a few hundred
    # access-log lines and then blocks every worker on its next log line.
    output = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py", "config.wsgi:application"],
        cwd=PROJECT_ROOT,
        env={
            **worker_environment(topology),
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "GUNICORN_WORKERS": str(workers),
            **extra_env,
        },
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def healthy() -> bool:
        try:
            return http_request(port, "GET", "/healthz")[0] == 200
        except OSError:
            return False

    try:
        if not wait_until(healthy, timeout=60):
            output.seek(0)
            raise AssertionError(f"gunicorn did not answer /healthz:\n{output.read()}")
        yield port
    finally:
        stop_worker_process(process)
        output.close()
