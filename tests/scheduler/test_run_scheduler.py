"""run_scheduler as real processes: one leader among two, failover, console control, SIGTERM."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django_apscheduler.models import DjangoJob

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


def test_two_schedulers_run_the_job_once_and_the_standby_takes_over(partner, ingest_queue):
    CollectionSource.objects.create(
        name="ticker", url=partner.serve("/tick", GOOD), device=DeviceFactory(), interval_seconds=1
    )
    first, second = _scheduler(ingest_queue), _scheduler(ingest_queue)
    try:
        assert wait_until(lambda: _leader_pid() in (first.pid, second.pid), timeout=20)
        leader, standby = (first, second) if _leader_pid() == first.pid else (second, first)
        assert wait_until(lambda: partner.hits.get("/tick", 0) >= 1, timeout=20)
        hits_before, started = partner.hits["/tick"], time.monotonic()
        time.sleep(4)
        per_second = (partner.hits["/tick"] - hits_before) / (time.monotonic() - started)
        # One leader collects the 1 s source about once a second; two would do it twice.
        assert 0.3 <= per_second <= 1.3, per_second

        os.kill(leader.pid, signal.SIGKILL)
        leader.wait(timeout=10)
        assert wait_until(lambda: _leader_pid() == standby.pid, timeout=20)
        hits_at_failover = partner.hits["/tick"]
        assert wait_until(lambda: partner.hits["/tick"] > hits_at_failover + 1, timeout=20)
    finally:
        outputs = [stop_worker_process(process) for process in (first, second)]
    standby_output = outputs[1][1] if standby is second else outputs[0][1]
    assert "on standby" in standby_output and "became leader" in standby_output


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
        assert "collect_sources paused: no partner source will be collected" in overview

        client.post("/console/scheduler/jobs/collect_sources/", {"action": "resume"})
        assert wait_until(
            lambda: DjangoJob.objects.get(id="collect_sources").next_run_time is not None, timeout=20
        )
        overview = client.get("/console/").content.decode()
        assert "running" in overview and "collect_sources paused" not in overview
    finally:
        returncode, output = stop_worker_process(scheduler)
    assert returncode == 0, output
