"""run_scheduler as real processes: one leader among two, failover, console control, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django_apscheduler.models import DjangoJob

from scheduler.leadership import SCHEDULER_LOCK_KEY
from scheduler.models import CollectionSource, SchedulerLeader, SchedulerRequest
from tests.factories import DeviceFactory, UserFactory
from tests.scheduler.test_collection import GOOD
from tests.workers import start_command_process, stop_worker_process, wait_until

pytestmark = pytest.mark.usefixtures("committed_db")


def _scheduler(topology, **env):
    return start_command_process(topology, "run_scheduler", **{"SCHEDULER_COLLECT_EVERY_SECONDS": "1", **env})


def _leader_pid() -> int | None:
    leader = SchedulerLeader.objects.filter(pk=1).first()
    return int(leader.instance.rsplit("pid=", 1)[1]) if leader else None


class FetchTally:
    """A partner source that notes when it was fetched and by which scheduler process.

    The caller is found from the request's socket: its client port names a socket inode in
    ``/proc/net/tcp``, and exactly one of the watched processes holds that inode open while
    it waits for the answer. Who ran each job is then a fact, not an inference from rates.
    """

    PATH = "/tally"

    def __init__(self) -> None:
        self.fetches: list[tuple[float, int | None]] = []
        self.watched_pids: tuple[int, ...] = ()
        tally = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                tally.fetches.append((time.monotonic(), tally.caller_pid(self.client_address[1])))
                body = json.dumps(GOOD).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{self.PATH}"

    def caller_pid(self, client_port: int) -> int | None:
        # The caller waits for our answer, so its socket stays open while we look. But
        # /proc/net/tcp is read in chunks while other sockets come and go, and the kernel may
        # skip a line between two reads: look again before calling the caller unknown.
        for _ in range(20):
            pid = self._caller_pid_once(client_port)
            if pid is not None:
                return pid
            time.sleep(0.005)
        return None

    def _caller_pid_once(self, client_port: int) -> int | None:
        local = f"0100007F:{client_port:04X}"
        inode = None
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == local:
                inode = fields[9]
                break
        if inode is None:
            return None
        for pid in self.watched_pids:
            try:
                fds = list(Path(f"/proc/{pid}/fd").iterdir())
            except OSError:
                continue  # the process is gone
            for fd in fds:
                # One fd closing between the listing and its readlink (the scheduler's other
                # threads open and close sockets all the time) must not skip the others.
                try:
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return pid
                except OSError:
                    continue
        return None

    def fetched_by(self, since: float, until: float = float("inf")) -> list[int | None]:
        return [pid for at, pid in list(self.fetches) if since <= at < until]


@pytest.fixture
def tally():
    server = FetchTally()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def _tally_source(tally: FetchTally) -> CollectionSource:
    # Due on every run of the 1 s job: each run of the job is one fetch.
    return CollectionSource.objects.create(
        name="ticker", url=tally.url, device=DeviceFactory(), interval_seconds=0
    )


def _fetchers_during(tally: FetchTally, seconds: float) -> list[int | None]:
    started = time.monotonic()
    time.sleep(seconds)
    return tally.fetched_by(started, time.monotonic())


def test_two_schedulers_run_the_job_once_and_the_standby_takes_over(tally, ingest_queue):
    _tally_source(tally)
    first, second = _scheduler(ingest_queue), _scheduler(ingest_queue)
    tally.watched_pids = (first.pid, second.pid)
    try:
        assert wait_until(lambda: _leader_pid() in (first.pid, second.pid), timeout=20)
        leader, standby = (first, second) if _leader_pid() == first.pid else (second, first)
        assert wait_until(lambda: len(tally.fetches) >= 1, timeout=20)
        # Only the leader runs jobs: every fetch in the window is its own.
        fetchers = _fetchers_during(tally, 5)
        # A fetch whose socket could not be found in /proc (None) names nobody; every fetch
        # that names a process names the leader, and the standby names none.
        attributed = [pid for pid in fetchers if pid is not None]
        assert len(attributed) >= 2, fetchers
        assert set(attributed) == {leader.pid}, (fetchers, leader.pid)

        os.kill(leader.pid, signal.SIGKILL)
        leader.wait(timeout=10)
        assert wait_until(lambda: _leader_pid() == standby.pid, timeout=20)
        taken_over = time.monotonic()
        assert wait_until(lambda: len(tally.fetched_by(taken_over)) >= 2, timeout=20)
        assert {pid for pid in tally.fetched_by(taken_over) if pid is not None} == {standby.pid}
    finally:
        outputs = [stop_worker_process(process) for process in (first, second)]
    standby_output = outputs[1][1] if standby is second else outputs[0][1]
    assert "on standby" in standby_output and "became leader" in standby_output


def _lock_session_connection() -> psycopg.Connection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True, options="-c statement_timeout=30000")


def test_a_leader_that_loses_its_lock_stops_running_jobs(tally, ingest_queue):
    """The lock's session ends (a failover, an idle-session kill): the old leader must stop
    at once, or it would run jobs beside whoever takes the lock next."""
    _tally_source(tally)
    first, second = _scheduler(ingest_queue), _scheduler(ingest_queue)
    tally.watched_pids = (first.pid, second.pid)
    other_holder = _lock_session_connection()
    try:
        assert wait_until(lambda: _leader_pid() in (first.pid, second.pid), timeout=20)
        leader = first if _leader_pid() == first.pid else second
        assert wait_until(lambda: len(tally.fetches) >= 1, timeout=20)

        # Another session queues for the lock, so it is the one that gets it when freed.
        waiting = threading.Thread(
            target=other_holder.execute, args=("SELECT pg_advisory_lock(%s)", [SCHEDULER_LOCK_KEY])
        )
        waiting.start()
        assert wait_until(lambda: _lock_sessions(granted=False) == 1, timeout=10)
        [leader_session] = _lock_sessions_pids(granted=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [leader_session])
        waiting.join(timeout=10)
        assert not waiting.is_alive(), "the lock was not freed by ending the leader's session"
        assert _lock_sessions_pids(granted=True) == [other_holder.info.backend_pid]

        time.sleep(1.5)  # the leader notices within a control poll; a running fetch finishes
        assert _fetchers_during(tally, 3) == [], "a scheduler ran jobs without holding the lock"
        assert first.poll() is None and second.poll() is None

        other_holder.close()  # the lock is free again: one scheduler leads and jobs resume
        freed = time.monotonic()
        assert wait_until(lambda: len(tally.fetched_by(freed)) >= 2, timeout=20)
        assert len(set(tally.fetched_by(freed))) == 1
    finally:
        other_holder.close()
        outputs = {process.pid: stop_worker_process(process) for process in (first, second)}
    returncode, output = outputs[leader.pid]
    assert returncode == 0, output
    assert "lost the leader lock" in output


def _lock_sessions_pids(*, granted: bool) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted = %s"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND ((classid::bigint << 32) | objid::bigint) = %s",
            [granted, SCHEDULER_LOCK_KEY],
        )
        return [row[0] for row in cursor.fetchall()]


def _lock_sessions(*, granted: bool) -> int:
    return len(_lock_sessions_pids(granted=granted))


def test_sigterm_stops_leader_and_standby_with_exit_0(ingest_queue):
    leader = _scheduler(ingest_queue)
    standby = None
    try:
        assert wait_until(lambda: _leader_pid() == leader.pid, timeout=20)
        standby = _scheduler(ingest_queue)
        time.sleep(2)
        for process in (leader, standby):
            signalled = time.monotonic()
            returncode, output = stop_worker_process(process, timeout=15)
            assert returncode == 0, output
            assert time.monotonic() - signalled < 10
            assert "scheduler stopped" in output
    finally:
        for process in (leader, standby):
            if process is not None and process.poll() is None:
                process.kill()


def test_run_now_pause_and_resume_from_the_console(partner, ingest_queue, client):
    CollectionSource.objects.create(name="on-demand", url=partner.serve("/now", GOOD), device=DeviceFactory())
    operator = UserFactory(username="olivia", role="Console operators")
    client.force_login(operator)
    scheduler = _scheduler(ingest_queue, SCHEDULER_COLLECT_EVERY_SECONDS="3600")
    try:
        assert wait_until(lambda: DjangoJob.objects.filter(id="collect_sources").exists(), timeout=20)
        assert "/now" not in partner.hits

        client.post("/console/scheduler/jobs/collect_sources/", {"action": "run_now"})
        assert wait_until(lambda: partner.hits.get("/now", 0) == 1, timeout=20)
        assert SchedulerRequest.objects.get(action="run_now").outcome == "started"

        client.post("/console/scheduler/jobs/collect_sources/", {"action": "pause"})
        assert wait_until(
            lambda: DjangoJob.objects.get(id="collect_sources").next_run_time is None, timeout=20
        )
        page = client.get("/console/scheduler/").content.decode()
        assert 'value="resume"' in page
        overview = client.get("/console/").content.decode()
        assert "Scheduler job collect_sources is paused" in overview
        assert "While it is paused no partner source will be collected." in overview

        client.post("/console/scheduler/jobs/collect_sources/", {"action": "resume"})
        assert wait_until(
            lambda: DjangoJob.objects.get(id="collect_sources").next_run_time is not None, timeout=20
        )
        overview = client.get("/console/").content.decode()
        assert "running" in overview and "collect_sources is paused" not in overview
    finally:
        returncode, output = stop_worker_process(scheduler)
    assert returncode == 0, output
