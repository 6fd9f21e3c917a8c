"""The console's own tables: bulk plans and jobs over dead letters, the audit trail, alert care and escalation."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models


class BulkAction(models.TextChoices):
    REQUEUE = "requeue", "Requeue"
    DISCARD = "discard", "Discard"


class BulkSelection(models.Model):
    """The frozen set of dead letters a bulk plan showed, and the only ones its job may touch.

    The ids are fixed when the plan is made: a dead letter that arrives later is never
    part of it, whatever filter or group the plan came from. Kept apart from plans and
    jobs so that listing them never loads 100,000 ids.
    """

    class Scope(models.TextChoices):
        SELECTED = "selected", "selected messages"
        FILTER = "filter", "everything matching a filter"
        GROUP = "group", "a failure group"

    scope = models.CharField(max_length=16, choices=Scope.choices)
    # What the operator chose, in words ("error class DataError, device 7"): for titles.
    criteria = models.CharField(max_length=255, blank=True, default="")
    # The ids, ascending: one array, so freezing 100,000 of them is one row.
    dead_letter_ids = ArrayField(models.BigIntegerField(), default=list)
    # [[error class, count], ...] of the frozen set when it was planned, largest first.
    error_classes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.get_scope_display()}: {self.criteria}"


class BulkPlan(models.Model):
    """A bulk action shown before it is done: confirming it (by its token) creates the job.

    The token is the only way to confirm, it belongs to the operator who planned, is
    used once and expires: a confirmation can only ever act on the set this plan froze.
    """

    token = models.CharField(max_length=64, unique=True)
    action = models.CharField(max_length=16, choices=BulkAction.choices)
    selection = models.ForeignKey(BulkSelection, on_delete=models.CASCADE, related_name="plans")
    total = models.PositiveIntegerField()
    description = models.CharField(max_length=255)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    job = models.OneToOneField(
        "BulkJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="plan"
    )

    def __str__(self) -> str:
        return f"plan: {self.get_action_display()} {self.total} ({self.description})"

    @property
    def total_display(self) -> str:
        return f"{self.total:,}"


class BulkJob(models.Model):
    """Requeue or discard a frozen set of dead letters, off the request thread, at a bounded rate.

    Only letters of ``selection`` still ``dead`` when the job reaches them are acted on.
    """

    Action = BulkAction

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    action = models.CharField(max_length=16, choices=Action.choices)
    selection = models.ForeignKey(BulkSelection, on_delete=models.PROTECT, related_name="jobs")
    description = models.CharField(max_length=255)
    reason = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The highest dead-letter id handled: a restarted runner continues after it.
    last_dead_letter_id = models.BigIntegerField(default=0)
    # Beaten after every chunk: a running job whose runner died (kill -9, crash) goes
    # quiet, and another runner takes it over after RUNNER_STALE_AFTER.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # A requeue pauses itself when the messages it requeued come back as dead letters:
    # why it paused, how many of them came back, and the counts when it was last resumed
    # (the failure rate is measured from there, so a resumed job does not pause at once).
    paused_reason = models.TextField(blank=True, default="")
    failed_again = models.PositiveIntegerField(default=0)
    resumed_at_done = models.PositiveIntegerField(default=0)
    resumed_at_failed_again = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return self.title

    @property
    def title(self) -> str:
        """What the job does, as an operator would say it: "Requeue 1,234 failed messages: ValueError"."""
        noun = "failed message" if self.total == 1 else "failed messages"
        return f"{self.get_action_display()} {self.total:,} {noun}: {self.description}"

    @property
    def progress_percent(self) -> int:
        if not self.total:
            return 100 if self.status == self.Status.DONE else 0
        return min(100, round(100 * (self.done + self.skipped) / self.total))

    @property
    def is_active(self) -> bool:
        """Not finished: it may still act (a paused job waits for Resume or Cancel)."""
        return self.status in (self.Status.QUEUED, self.Status.RUNNING, self.Status.PAUSED)

    @property
    def is_finished(self) -> bool:
        return not self.is_active


class AuditEntry(models.Model):
    """Who did what in the console, when and why (dead-letter actions have their own trail)."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=255)
    detail = models.TextField(blank=True, default="")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The bulk job this entry is about: one entry per job, however many messages it touches.
    bulk_job = models.ForeignKey(
        BulkJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )

    class Meta:
        ordering = ("-at", "-id")
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action} {self.target}"


class AlertAction(models.Model):
    """An operator acknowledging or resolving an alert, with the note they gave.

    The customer's ``alerts`` row keeps only its status and who acknowledged it; the note,
    and who resolved it and when, live here.
    """

    class Action(models.TextChoices):
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    alert = models.ForeignKey(
        "ingest.Alert", on_delete=models.DO_NOTHING, db_constraint=False, related_name="console_actions"
    )
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150)
    note = models.TextField(blank=True, default="")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("at", "id")

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action} alert {self.alert_id}"


class AlertEscalation(models.Model):
    """An open alert nobody acknowledged in time, handed to the on-call hook.

    One row per alert (the primary key is the alert): however many scheduler runs find the
    same overdue alert, it is escalated once. ``webhook-id`` is the same on every retry, so
    the receiver can drop a repeat after a crash between its answer and our record.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying"
        SENT = "sent", "Sent"
        # The alert was acknowledged or resolved before a delivery succeeded.
        CANCELLED = "cancelled", "Cancelled"

    alert = models.OneToOneField(
        "ingest.Alert",
        primary_key=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="escalation",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    # Where it went: the hook's scheme, host and path (never its query, which may hold a token).
    target = models.CharField(max_length=255, blank=True, default="")
    last_error = models.TextField(blank=True, default="")

    class Meta:
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="escalation_due",
                condition=models.Q(status__in=["pending", "retrying"]),
            )
        ]

    def __str__(self) -> str:
        return f"escalation of alert {self.alert_id} ({self.status})"


class AlertEscalationAttempt(models.Model):
    """One delivery attempt to the on-call hook and how it ended."""

    escalation = models.ForeignKey(AlertEscalation, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField(auto_now_add=True)
    target = models.CharField(max_length=255)
    succeeded = models.BooleanField()
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ("at", "id")

    def __str__(self) -> str:
        return f"{'sent' if self.succeeded else 'failed'} to {self.target} at {self.at}"
