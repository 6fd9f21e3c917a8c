"""The scheduler process: stand by until it holds the leader lock, then run the jobs.

The leader runs a BlockingScheduler with django-apscheduler's DjangoJobStore (jobs and
their executions in the database, visible in the console). A small control thread
beats the leader's heartbeat, carries out console requests (run now, pause, resume)
and stops the scheduler if the lock is lost.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import UTC

from apscheduler.schedulers.blocking import BlockingScheduler
from django.conf import settings
from django.db import close_old_connections, connections
from django_apscheduler.jobstores import DjangoJobStore
from django_apscheduler.models import DjangoJob

from scheduler.jobs import job_specs
from scheduler.leadership import LeaderLock
from scheduler.services.control import leader_heartbeat, scheduler_requests_apply

logger = logging.getLogger(__name__)


class SchedulerRunner:
    def __init__(self) -> None:
        self.instance = f"{socket.gethostname()} pid={os.getpid()}"
        self.lock = LeaderLock()
        self._stop = threading.Event()
        self._scheduler: BlockingScheduler | None = None

    def request_stop(self) -> None:
        """Signal-handler safe: leave standby, or shut the scheduler down after its running jobs."""
        self._stop.set()
        scheduler = self._scheduler
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)

    def run(self) -> None:
        logger.info("scheduler %s starting", self.instance)
        announced_standby = False
        while not self._stop.is_set():
            if self.lock.try_acquire():
                logger.info("scheduler %s became leader", self.instance)
                announced_standby = False
                try:
                    self._lead()
                finally:
                    self.lock.release()
                continue
            if not announced_standby:
                logger.info("scheduler %s on standby: another scheduler leads", self.instance)
                announced_standby = True
            self._stop.wait(settings.SCHEDULER_STANDBY_POLL_SECONDS)
        logger.info("scheduler %s stopped", self.instance)

    def _lead(self) -> None:
        scheduler = BlockingScheduler(
            timezone=UTC,
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 60},
        )
        scheduler.add_jobstore(DjangoJobStore(), "default")
        paused = set(DjangoJob.objects.filter(next_run_time__isnull=True).values_list("id", flat=True))
        for spec in job_specs():
            options = {"next_run_time": None} if spec.id in paused else {}
            scheduler.add_job(
                spec.func,
                "interval",
                seconds=spec.every_seconds,
                id=spec.id,
                name=spec.description,
                replace_existing=True,
                **options,
            )
        close_old_connections()
        self._scheduler = scheduler
        control = threading.Thread(
            target=self._control, args=(scheduler,), name="scheduler-control", daemon=True
        )
        control.start()
        try:
            if not self._stop.is_set():
                scheduler.start()  # blocks until shutdown
        finally:
            self._scheduler = None
            control.join(timeout=5)

    def _control(self, scheduler: BlockingScheduler) -> None:
        try:
            while not self._stop.is_set():
                if not self.lock.still_held():
                    logger.error("scheduler %s lost the leader lock; stopping its jobs", self.instance)
                    break
                close_old_connections()
                try:
                    leader_heartbeat(instance=self.instance)
                    # Requests wait until the scheduler runs: before that its jobs are only
                    # "tentatively added" and a run-now would find no job to modify.
                    if scheduler.running:
                        scheduler_requests_apply(scheduler=scheduler)
                except Exception:  # noqa: BLE001 - a database hiccup must not end the leader
                    logger.exception("scheduler control step failed")
                if not scheduler.running and self._scheduler is None:
                    return
                time.sleep(settings.SCHEDULER_CONTROL_POLL_SECONDS)
        finally:
            if scheduler.running:
                scheduler.shutdown(wait=False)
            connections.close_all()
