"""Tables this application owns (created by migrations)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F
from rest_framework_api_key.models import AbstractAPIKey, BaseAPIKeyManager

from .customer import Device


class DeviceAPIKeyManager(BaseAPIKeyManager):
    def get_usable_keys(self):
        # Authentication needs the device right after the key: one query, not two.
        return super().get_usable_keys().select_related("device")


class DeviceAPIKey(AbstractAPIKey):
    """A device's API key; only its SHA-512 hash is stored, the key is shown once."""

    objects = DeviceAPIKeyManager()
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="api_keys")
    # When a request last authenticated with the key, to the minute: written at most once
    # a minute per key and web process (ingest/device_key_usage.py), never per request.
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "device API key"
        verbose_name_plural = "device API keys"
        permissions = [("manage_device_keys", "Can issue and revoke device keys")]


class MessageKind(models.TextChoices):
    DEVICE_BATCH = "device_batch", "Device batch"
    WEBHOOK_EVENT = "webhook_event", "Webhook event"


class IngestMessage(models.Model):
    """Ledger of pipeline messages, by the id returned to the sender.

    The web tier writes nothing: the worker writes the row, ``processed`` in the same
    transaction as the records (or ``pending`` with the attempts when one fails). A
    redelivered or duplicated message finds ``processed`` and inserts nothing twice.
    Until the row exists, the id itself proves its message (ingest/message_ids.py).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSED = "processed", "Processed"

    message_id = models.UUIDField(primary_key=True)
    kind = models.CharField(max_length=16, choices=MessageKind.choices)
    # No database constraint: the ledger must never stop a device from being deleted.
    device = models.ForeignKey(
        Device,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    received_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    readings = models.PositiveIntegerField(default=0)
    events = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    # Set by the worker when a failed attempt is sent to a retry tier (cleared when it is
    # dead-lettered): the console's retries page lists what waits, and until when.
    last_failed_at = models.DateTimeField(null=True, blank=True)
    retry_due_at = models.DateTimeField(null=True, blank=True)
    # The exactly-once proof the console shows. ``attempts`` starts again when a dead
    # letter is requeued; these two never do. Every delivery the worker saw is one of:
    # failed, the one stored (``processed``), or a duplicate the ledger absorbed.
    # Database defaults as well: the worker writes the ledger in SQL of its own.
    failed_deliveries = models.PositiveIntegerField(default=0, db_default=0)
    duplicate_deliveries = models.PositiveIntegerField(default=0, db_default=0)
    # A gateway's message: how many other devices of its household it carries records for
    # (``device`` stays the gateway, the sender). The rows themselves name each device.
    relayed_devices = models.PositiveIntegerField(default=0, db_default=0)

    class Meta:
        verbose_name = "ingest message"
        # Only the few messages waiting for a retry: the ledger's processed millions stay out.
        indexes = [
            models.Index(
                fields=["retry_due_at"],
                name="ingestmessage_retry_waiting",
                condition=models.Q(status="pending", retry_due_at__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return f"{self.message_id} ({self.status})"

    @property
    def deliveries(self) -> int:
        stored = 1 if self.status == self.Status.PROCESSED else 0
        return self.failed_deliveries + stored + self.duplicate_deliveries


class DeadLetter(models.Model):
    """A message that can never succeed as it is: kept with everything needed to repair it."""

    class Status(models.TextChoices):
        DEAD = "dead", "Dead"
        REQUEUED = "requeued", "Requeued"
        DISCARDED = "discarded", "Discarded"

    message_id = models.UUIDField(unique=True)
    kind = models.CharField(max_length=16, blank=True, default="")
    device = models.ForeignKey(
        Device,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    original_queue = models.CharField(max_length=255)
    original_routing_key = models.CharField(max_length=255)
    headers = models.JSONField(default=dict)
    # The body exactly as it was received: any bytes at all.
    body = models.BinaryField()
    # The body as text for searching: as sent where it is UTF-8, with invalid bytes, NUL
    # and the like escaped ("\xff", "\x00") where it is not. Never shown as the body.
    body_text = models.TextField()
    error_class = models.CharField(max_length=255)
    error_message = models.TextField()
    # error class + error message with numbers and ids blanked: failures that share a
    # cause share a fingerprint, so the console can group and act on them together.
    fingerprint = models.CharField(max_length=64)
    traceback = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField()
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DEAD)
    recorded_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Set when the database refused the full record: the message was kept with its body
    # and id only (headers as escaped text), so that it never blocks the letters behind it.
    recording_error = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = "dead letter"
        permissions = [
            ("requeue_deadletter", "Can requeue (and edit) dead letters"),
            ("discard_deadletter", "Can discard dead letters"),
        ]
        # Only the indexes the console's queries use: every index on ``status`` is rewritten
        # when a bulk job requeues or discards, and the ``varchar_pattern_ops`` twins that
        # ``db_index=True`` adds on PostgreSQL serve LIKE queries nobody makes. ``status``
        # is read through the composite index (its first column).
        indexes = [
            models.Index(fields=["status", "-last_failed_at"], name="deadletter_status_recent"),
            models.Index(fields=["fingerprint"], name="deadletter_fingerprint"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id}: {self.error_class}"


class DeadLetterRecorder(models.Model):
    """A worker's dead-letter recorder checking in, for the console's health signal.

    ``caught_up_at`` moves while the recorder makes progress (it recorded what it held,
    or held nothing). A recorder that checks in but has not caught up for a while is
    stuck; dead letters waiting with no recorder caught up lately are not being recorded.
    """

    name = models.CharField(max_length=255, unique=True)  # host:pid
    checked_in_at = models.DateTimeField()
    caught_up_at = models.DateTimeField(null=True, blank=True)
    holding = models.PositiveIntegerField(default=0)  # delivered to it, not yet recorded
    last_error = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = "dead-letter recorder"

    def __str__(self) -> str:
        return self.name


class DeadLetterAction(models.Model):
    """Audit trail: who did what to a dead letter, when and why."""

    class Action(models.TextChoices):
        RECORDED = "recorded", "Recorded"
        REQUEUED = "requeued", "Requeued"
        EDITED_AND_REQUEUED = "edited_requeued", "Edited and requeued"
        DISCARDED = "discarded", "Discarded"

    dead_letter = models.ForeignKey(DeadLetter, on_delete=models.CASCADE, related_name="actions")
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    # For an edit: the body before it (the dead letter then holds the edited one), and
    # the unified diff the operator confirmed.
    previous_body = models.BinaryField(null=True, blank=True)
    body_diff = models.TextField(blank=True, default="", db_default="")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The console bulk job that did this, if one did: the console audits the job once, not
    # each of its (perhaps 100,000) messages. No foreign key: ingest knows nothing of the console.
    bulk_job_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ("at", "id")
        indexes = [
            # The console's audit trail pages through what people did one message at a
            # time, newest first; recordings and bulk jobs' rows (audited once per job)
            # are most of the table and stay out of this index.
            models.Index(
                F("at").desc(),
                name="deadletteraction_by_people",
                condition=models.Q(bulk_job_id__isnull=True) & ~models.Q(action="recorded"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_name or 'system'}"

    @property
    def previous_body_text(self) -> str:
        return bytes(self.previous_body).decode("utf-8", errors="replace") if self.previous_body else ""


class WebhookSource(models.Model):
    """A partner system allowed to push to ``/api/v1/webhooks/<name>/``.

    The secret (``whsec_<base64>``, Standard Webhooks) must be kept in clear: verifying
    an HMAC needs it. The console never shows it again after it is set.
    """

    name = models.SlugField(max_length=64, unique=True)
    secret = models.CharField(max_length=255)
    is_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class AlertOrigin(models.Model):
    """The device event that raised an alert, recorded in the statement that stores both.

    The customer's ``alerts`` table has no column for it. Neither link is a foreign-key
    constraint: the customer's tables stay free to delete their rows.
    """

    alert = models.OneToOneField(
        "ingest.Alert",
        primary_key=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="origin",
    )
    event = models.ForeignKey(
        "ingest.DeviceEvent", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )

    class Meta:
        verbose_name = "alert origin"

    def __str__(self) -> str:
        return f"alert {self.alert_id} raised by event {self.event_id}"
