"""The scheduler's own tables: collection sources and their runs, leadership, console requests.

APScheduler's jobs and executions live in django-apscheduler's tables (DjangoJob,
DjangoJobExecution).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from ingest.models import Device


class CollectionSource(models.Model):
    """A partner system polled for device data, validated and published like the ingest API.

    The endpoint answers a JSON object ``{"readings": [...], "events": [...]}`` for the
    source's device. The auth header is kept in clear (it must be sent) but never shown
    back by the console.
    """

    name = models.SlugField(max_length=64, unique=True)
    url = models.URLField(max_length=500)
    interval_seconds = models.PositiveIntegerField(default=300)
    auth_header = models.CharField(
        max_length=500, blank=True, default="", help_text="e.g. 'Authorization: Bearer …'; write-only"
    )
    device = models.ForeignKey(Device, on_delete=models.PROTECT, db_constraint=False, related_name="+")
    is_enabled = models.BooleanField(default=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class CollectionRun(models.Model):
    class Status(models.TextChoices):
        OK = "ok", "OK"
        PARTIAL = "partial", "Some records rejected"
        FAILED = "failed", "Failed"

    source = models.ForeignKey(CollectionSource, on_delete=models.CASCADE, related_name="runs")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices)
    fetched = models.PositiveIntegerField(default=0)
    published = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    # [{"kind": "reading"|"event", "index": n, "errors": {...}}, ...] (the first 100)
    rejections = models.JSONField(default=list)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ("-started_at",)
        indexes = [models.Index(fields=["source", "-started_at"], name="collectionrun_source_recent")]

    def __str__(self) -> str:
        return f"{self.source} {self.status} at {self.started_at:%Y-%m-%d %H:%M:%S}"


class SchedulerLeader(models.Model):
    """One row: which scheduler process leads, and when it last said so."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    instance = models.CharField(max_length=255)
    since = models.DateTimeField()
    heartbeat_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.instance


class SchedulerRequest(models.Model):
    """A console request (run now, pause, resume) the leader carries out within seconds."""

    class Action(models.TextChoices):
        RUN_NOW = "run_now", "Run now"
        PAUSE = "pause", "Pause"
        RESUME = "resume", "Resume"

    job_id = models.CharField(max_length=255)
    action = models.CharField(max_length=16, choices=Action.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True, db_index=True)
    outcome = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ("requested_at",)

    def __str__(self) -> str:
        return f"{self.action} {self.job_id}"
