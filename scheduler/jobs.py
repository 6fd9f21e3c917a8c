"""The periodic jobs. Each is a thin call of a service, with stale DB connections closed around it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_apscheduler.util import close_old_connections

from dashboard.services.alert_escalation import alert_escalations_run
from scheduler.services.alert_rules import device_offline_alerts_raise, inactivity_alerts_raise
from scheduler.services.collection import sources_collect_due
from scheduler.services.housekeeping import housekeeping_prune

logger = logging.getLogger(__name__)


@close_old_connections
def collect_sources() -> None:
    runs = sources_collect_due(now=timezone.now())
    if runs:
        logger.info(
            "collected %d source(s): %s",
            len(runs),
            ", ".join(f"{run.source.name}={run.status}" for run in runs),
        )


@close_old_connections
def raise_alerts() -> None:
    now = timezone.now()
    offline = device_offline_alerts_raise(
        now=now, silent_after=timedelta(minutes=settings.ALERT_DEVICE_OFFLINE_MINUTES)
    )
    inactive = inactivity_alerts_raise(now=now, quiet_for=timedelta(hours=settings.ALERT_INACTIVITY_HOURS))
    if offline or inactive:
        logger.info("alerts opened: %d device_offline, %d inactivity", offline, inactive)


@close_old_connections
def escalate_alerts() -> None:
    run = alert_escalations_run(now=timezone.now())
    if run.enrolled or run.sent or run.failed:
        logger.info(
            "alert escalation: %d newly overdue, sent %s, failed %s", run.enrolled, run.sent, run.failed
        )


@close_old_connections
def housekeeping() -> None:
    logger.info("housekeeping pruned %s", housekeeping_prune(now=timezone.now()))


@dataclass(frozen=True)
class JobSpec:
    id: str
    func: object
    every_seconds: int
    description: str
    # What stops happening while the job is paused, when that puts residents or data at
    # risk: the overview then shows the pause as an alarm.
    when_paused: str = ""


def job_specs() -> list[JobSpec]:
    """The jobs, with stable ids (the console and the job store know them by these)."""
    return [
        JobSpec(
            "collect_sources",
            collect_sources,
            settings.SCHEDULER_COLLECT_EVERY_SECONDS,
            "Collect due partner sources into the pipeline",
            when_paused="no partner source will be collected",
        ),
        JobSpec(
            "raise_alerts",
            raise_alerts,
            settings.SCHEDULER_ALERT_RULES_EVERY_SECONDS,
            "Open device_offline and inactivity alerts",
            when_paused="no offline or inactivity alerts will be raised",
        ),
        JobSpec(
            "escalate_alerts",
            escalate_alerts,
            settings.SCHEDULER_ESCALATION_EVERY_SECONDS,
            "Escalate open alerts nobody acknowledged in time to the on-call hook",
            when_paused="overdue alerts will not be escalated to the on-call hook",
        ),
        JobSpec(
            "housekeeping",
            housekeeping,
            settings.SCHEDULER_HOUSEKEEPING_EVERY_SECONDS,
            "Prune old executions, ledger rows, discarded dead letters, collection runs",
        ),
    ]
