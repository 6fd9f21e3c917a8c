"""The pipeline's health as red banners: each rule reads one signal and says what is wrong.

The overview shows every banner in full; every other console page shows them in one
compact line (``dashboard.context_processors.health``). Templates only render the list:
which conditions raise a banner, and what it says, is decided here.

A number the broker could not give is unknown, never 0: while the broker is unreachable
only that banner is raised about queues, and no rule treats missing depths as empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Max, Window
from django.db.models.functions import RowNumber
from django.urls import reverse
from django.utils import timezone

from config.replica import replica_status
from dashboard.models import BulkJob
from ingest.broker.monitoring import QueueDepth, broker_node_statuses, queue_depths
from ingest.broker.rates import QueueRates
from ingest.models import IngestMessage
from ingest.selectors.dead_letters import dead_letter_recording_stall

# Queues a worker must consume: the retry tiers have no consumer by design (their TTL
# hands messages back), the others stop the pipeline when nobody reads them.
_CONSUMED_QUEUES = {
    "main": "Nothing is being stored: start a worker (manage.py consume_queue).",
    "retry due": "Retries that come due are not processed: start a worker (manage.py consume_queue).",
    "dead letters": (
        "Dead letters are not recorded: the worker's dead-letter recorder is not running"
        " (it runs inside manage.py consume_queue)."
    ),
}
_NOT_READ = object()


@dataclass(frozen=True)
class HealthBanner:
    """One thing an operator must act on, with where to act."""

    kind: str  # stable, for anchors and tests: "no-consumers", "broker-unreachable", ...
    title: str
    detail: str
    link: str = ""
    link_text: str = ""


@dataclass(frozen=True)
class QueueRow:
    """A queue on the overview: depths from the broker, rates from the management API.

    Every number is None where it is unknown (shown as "unknown"), never a made-up 0.
    """

    name: str
    role: str
    ready: int | None
    unacked: int | None
    consumers: int | None
    rates: QueueRates | None
    replicas: int | None = None
    replicas_online: int | None = None

    @property
    def link(self) -> str:
        """Where the operator sees what the queue holds (retry tiers only, for now)."""
        if self.role in ("retry", "retry due"):
            return reverse("dashboard:retries") + f"#{self.name}"
        return ""


def queue_rows(queues: list[QueueDepth] | None, rates: dict[str, QueueRates] | None) -> list[QueueRow] | None:
    if queues is None:
        return None
    return [
        QueueRow(
            queue.name,
            queue.role,
            queue.ready,
            queue.unacked,
            queue.consumers,
            (rates or {}).get(queue.name),
            queue.replicas,
            queue.replicas_online,
        )
        for queue in queues
    ]


def health_banners(*, queues: list[QueueDepth] | None | object = _NOT_READ) -> list[HealthBanner]:
    """Every banner that holds now, the most fundamental first.

    ``queues`` is the broker's answer when the caller already has it (None: unreachable).
    """
    if queues is _NOT_READ:
        queues = queue_depths()
    return [
        *_broker_banners(queues),
        *_cluster_banners(queues),
        *_replica_banners(),
        *_dead_letter_banners(queues),
        *_stale_processing_banners(queues),
        *_scheduler_banners(),
        *_bulk_job_banners(),
        *_collection_source_banners(),
    ]


def _broker_banners(queues: list[QueueDepth] | None) -> list[HealthBanner]:
    if queues is None:
        return [
            HealthBanner(
                "broker-unreachable",
                "The broker is unreachable",
                "Queue depths, consumers and rates are unknown, and devices cannot deliver data"
                " until RabbitMQ answers again.",
            )
        ]
    return [
        HealthBanner(
            "no-consumers",
            f"No consumers on {queue.name}",
            ("The queue is not declared yet. " if queue.consumers is None else "")
            + _CONSUMED_QUEUES[queue.role],
            reverse("dashboard:overview") + "#queues",
            "queues",
        )
        for queue in queues
        if queue.role in _CONSUMED_QUEUES and not queue.consumers
    ]


def _cluster_banners(queues: list[QueueDepth] | None) -> list[HealthBanner]:
    """A broker node down, a quorum queue short of replicas: still working, one step from not."""
    if queues is None:
        return []  # the broker-unreachable banner says it all
    banners = [
        HealthBanner(
            "broker-node-down",
            f"Broker node {node.name} is down",
            "The cluster carries on while a majority of each queue's replicas is online."
            " Start the node again: it rejoins the cluster and its queues by itself.",
            reverse("dashboard:overview") + "#queues",
            "queues",
        )
        for node in broker_node_statuses() or []
        if not node.running
    ]
    banners += [
        HealthBanner(
            "queue-replicas-missing",
            f"{queue.name} has {queue.replicas_online or 0} of {queue.replicas} replicas online",
            f"It accepts and delivers messages while {queue.replicas // 2 + 1} are online;"
            " with fewer, devices get 503 until the nodes are back.",
            reverse("dashboard:overview") + "#queues",
            "queues",
        )
        for queue in queues
        if queue.replicas_missing
    ]
    return banners


def _replica_banners() -> list[HealthBanner]:
    replica = replica_status()
    if replica is None or replica.usable:
        return []
    return [
        HealthBanner(
            "replica-fallback",
            "Console pages read from the primary database",
            replica.problem[:1].upper() + replica.problem[1:] + ": the read replica is not used until it is"
            " back and caught up, and the primary carries the console's reads meanwhile.",
            reverse("dashboard:overview") + "#replica",
            "replication",
        )
    ]


def _dead_letter_banners(queues: list[QueueDepth] | None) -> list[HealthBanner]:
    stall = dead_letter_recording_stall(queues)
    if not stall:
        return []
    return [
        HealthBanner(
            "dead-letters-unrecorded",
            "Dead letters are arriving but not being recorded",
            stall[:1].upper() + stall[1:] + ".",
            reverse("dashboard:dead-letters") + "?status=dead",
            "failed messages",
        )
    ]


def messages_waiting(queues: list[QueueDepth] | None) -> int | None:
    """Messages for a worker (main queue and retries come due); None when unknown.

    Unacked ones count too where the management API gives them: a worker stuck on its
    batch (an outage it waits out) holds them while the queue itself looks empty.
    """
    ours = [queue for queue in queues or [] if queue.role in ("main", "retry due")]
    if not ours or any(queue.ready is None for queue in ours):
        return None
    return sum(queue.ready + (queue.unacked or 0) for queue in ours)


def last_processed_at():
    return IngestMessage.objects.aggregate(last=Max("processed_at"))["last"]


def _stale_processing_banners(queues: list[QueueDepth] | None) -> list[HealthBanner]:
    waiting = messages_waiting(queues)
    if not waiting:
        return []
    threshold = settings.CONSOLE_STALE_PROCESSING_SECONDS
    last = last_processed_at()
    if last is None:
        title = "No message has ever been processed"
    else:
        age = (timezone.now() - last).total_seconds()
        if age <= threshold:
            return []
        title = f"Last processed {age:.0f} s ago"
    return [
        HealthBanner(
            "stale-processing",
            title,
            f"{waiting} message(s) wait on the queues and none was stored in the last {threshold:g} s.",
            reverse("dashboard:overview") + "#queues",
            "queues",
        )
    ]


def _scheduler_banners() -> list[HealthBanner]:
    from scheduler.jobs import job_specs
    from scheduler.selectors import scheduled_jobs, scheduler_state

    link = reverse("dashboard:scheduler")
    banners = []
    state = scheduler_state()
    if state.state != "running" and "No scheduler has run yet" not in state.detail:
        banners.append(
            HealthBanner("scheduler-stopped", "The scheduler is not running", state.detail, link, "scheduler")
        )
    consequences = {spec.id: spec.when_paused for spec in job_specs()}
    for job in scheduled_jobs():
        if job.paused:
            consequence = consequences.get(job.id)
            banners.append(
                HealthBanner(
                    "job-paused",
                    f"Scheduler job {job.id} is paused",
                    f"While it is paused {consequence}." if consequence else "It will not run until resumed.",
                    link,
                    "resume it on the scheduler page",
                )
            )
        if job.failing:
            last = job.recent[0]
            banners.append(
                HealthBanner(
                    "job-failing",
                    f"Scheduler job {job.id} is failing",
                    f"Its last run at {last.run_time:%Y-%m-%d %H:%M:%S} UTC failed: {last.exception or 'no detail'}",
                    link,
                    "scheduler",
                )
            )
    return banners


def _bulk_job_banners() -> list[HealthBanner]:
    since = timezone.now() - timedelta(hours=settings.CONSOLE_FAILED_JOB_BANNER_HOURS)
    failed = BulkJob.objects.filter(status=BulkJob.Status.FAILED, finished_at__gte=since).order_by(
        "-finished_at"
    )[:5]
    return [
        HealthBanner(
            "job-failing",
            f"Bulk job {job.pk} failed",
            f"{job}: {job.error or 'no detail'} ({job.done} of {job.total} done).",
            reverse("dashboard:job-detail", args=[job.pk]),
            f"job {job.pk}",
        )
        for job in failed
    ]


def _collection_source_banners() -> list[HealthBanner]:
    from scheduler.models import CollectionRun

    runs_in_a_row = settings.CONSOLE_SOURCE_FAILING_RUNS
    # Each enabled source's latest runs, in one query.
    latest = (
        CollectionRun.objects.filter(source__is_enabled=True)
        .annotate(newness=Window(RowNumber(), partition_by=[F("source_id")], order_by=F("started_at").desc()))
        .filter(newness__lte=runs_in_a_row)
        .select_related("source")
        .order_by("source__name", "newness")
    )
    runs_by_source: dict[str, list] = {}
    for run in latest:
        runs_by_source.setdefault(run.source.name, []).append(run)
    return [
        HealthBanner(
            "source-failing",
            f"Collection source {name} is failing",
            f"Its last {runs_in_a_row} runs failed; the latest, at"
            f" {runs[0].started_at:%Y-%m-%d %H:%M:%S} UTC: {runs[0].error or 'no detail'}",
            reverse("dashboard:scheduler") + "#sources",
            "collection sources",
        )
        for name, runs in runs_by_source.items()
        if len(runs) == runs_in_a_row and all(run.status == CollectionRun.Status.FAILED for run in runs)
    ]
