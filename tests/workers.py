"""Running the real worker from tests: in a thread, or as a ``consume_queue`` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import quote

import psycopg
from django.conf import settings
from django.db import connection, connections

from ingest.broker.topology import Topology
from ingest.worker import IngestWorker

PROJECT_ROOT = Path(settings.BASE_DIR)


def wait_until(predicate: Callable[[], bool], *, timeout: float = 20.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@contextmanager
def worker_thread(topology: Topology, **options) -> Iterator[IngestWorker]:
    """The worker consuming in a background thread (its own database connection)."""
    options = {
        "batch_size": 50,
        "batch_max_wait": 0.05,
        "idle_poll": 0.1,
        "max_attempts": settings.INGEST_MAX_ATTEMPTS,
        **options,
    }
    worker = IngestWorker(topology=topology, **options)
    failure: list[BaseException] = []

    def consume():
        try:
            worker.run()
        except BaseException as error:  # surfaced in the test, not lost in the thread
            failure.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=consume, name="ingest-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.request_stop()
        thread.join(timeout=15)
    assert not thread.is_alive(), "the worker did not stop within 15 s"
    if failure:
        raise failure[0]


def worker_environment(topology: Topology) -> dict[str, str]:
    """Environment for a ``consume_queue`` process on this run's test database and queues."""
    db = connection.settings_dict
    url = (
        f"postgres://{quote(db['USER'] or '')}:{quote(db['PASSWORD'] or '')}@"
        f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": url,
        "TEST_RABBITMQ_QUEUE_NAME": topology.queue,
        "PYTHONUNBUFFERED": "1",
    }


def start_worker_process(topology: Topology, *args: str) -> subprocess.Popen:
    return start_command_process(topology, "consume_queue", *args)


def start_command_process(
    topology: Topology, command: str, *args: str, log_file: Path | None = None, **extra_env: str
) -> subprocess.Popen:
    """``manage.py <command>`` as its own process, on this run's test database and queues.

    Its output is piped (read it when it ends), or written to ``log_file`` for a test that
    waits for a line while the process runs.
    """
    with open(log_file, "w") if log_file else nullcontext(subprocess.PIPE) as stdout:
        return subprocess.Popen(
            [sys.executable, "manage.py", command, *args],
            cwd=PROJECT_ROOT,
            env={**worker_environment(topology), **extra_env},
            stdout=stdout,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def stop_worker_process(process: subprocess.Popen, *, timeout: float = 15) -> tuple[int, str]:
    """SIGTERM and wait; a process that does not stop in time is killed (and the test fails)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"process {process.args} ignored SIGTERM for {timeout} s:\n{output}") from None
    return process.returncode, output


def maintenance_connection() -> psycopg.Connection:
    """A connection to the ``postgres`` database, for creating, dropping and locking out others."""
    params = connection.get_connection_params()
    return psycopg.connect(
        host=params.get("host"),
        port=params.get("port"),
        user=params.get("user"),
        password=params.get("password"),
        dbname="postgres",
        autocommit=True,
    )


@contextmanager
def database_unavailable() -> Iterator[None]:
    """Refuse new connections to the test database and cut every other session off.

    The test's own connection stays open; a database cannot refuse connections to
    itself, so the switch is thrown from the maintenance database.
    """
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        own_pid = cursor.fetchone()[0]
    with maintenance_connection() as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
            [name, own_pid],
        )
    try:
        yield
    finally:
        with maintenance_connection() as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
