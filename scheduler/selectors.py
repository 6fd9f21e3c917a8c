"""Reads about the scheduler for the console."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django_apscheduler.models import DjangoJob, DjangoJobExecution

from scheduler.models import CollectionRun, CollectionSource, SchedulerLeader

RECENT_RUNS = 10


@dataclass(frozen=True)
class JobView:
    id: str
    next_run_time: datetime | None
    recent: list[DjangoJobExecution]

    @property
    def paused(self) -> bool:
        return self.next_run_time is None

    @property
    def failing(self) -> bool:
        return bool(self.recent) and self.recent[0].status == DjangoJobExecution.ERROR


def scheduled_jobs() -> list[JobView]:
    return [
        JobView(
            job.id,
            job.next_run_time,
            list(DjangoJobExecution.objects.filter(job=job).order_by("-run_time")[:RECENT_RUNS]),
        )
        for job in DjangoJob.objects.order_by("id")
    ]


@dataclass(frozen=True)
class SchedulerState:
    state: str  # running | stale | not running
    detail: str
    failing_jobs: list[str]


def scheduler_state(*, now: datetime | None = None) -> SchedulerState:
    """Who leads and whether it is alive (its heartbeat), and which jobs failed last time."""
    now = now or timezone.now()
    failing = [job.id for job in scheduled_jobs() if job.failing]
    leader = SchedulerLeader.objects.filter(pk=1).first()
    if leader is None:
        return SchedulerState(
            "not running", "No scheduler has run yet (python manage.py run_scheduler).", failing
        )
    age = (now - leader.heartbeat_at).total_seconds()
    if age > max(30, 10 * settings.SCHEDULER_CONTROL_POLL_SECONDS):
        return SchedulerState(
            "not running",
            f"Last heartbeat {timedelta(seconds=int(age))} ago from {leader.instance}.",
            failing,
        )
    return SchedulerState(
        "running", f"Leader {leader.instance} since {leader.since:%Y-%m-%d %H:%M:%S}.", failing
    )


@dataclass(frozen=True)
class SourceView:
    source: CollectionSource
    last_run: CollectionRun | None


def collection_sources() -> list[SourceView]:
    sources = list(CollectionSource.objects.select_related("device").order_by("name"))
    return [SourceView(source, source.runs.order_by("-started_at").first()) for source in sources]
