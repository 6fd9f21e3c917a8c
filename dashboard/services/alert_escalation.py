"""Escalating overdue alerts to the on-call system through a signed webhook.

An open alert nobody acknowledged within ``ALERT_ESCALATE_MINUTES`` gets one
``AlertEscalation`` row (the alert is its primary key, so it is enrolled once however
many runs see it). A run claims due rows with ``FOR UPDATE SKIP LOCKED`` and keeps the
lock while it delivers: two runs racing never deliver the same escalation, and a row
marked sent is never claimed again. A failed delivery (error, timeout, non-2xx) is
recorded and tried again by a later run, after a delay that doubles up to a bound.

Deliveries are signed the way the product's inbound webhooks are verified (Standard
Webhooks, ``ingest.services.webhooks``); ``webhook-id`` is the same on every retry, so
the receiver can drop the repeat that a crash between its answer and our commit causes.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from dashboard.models import AlertEscalation, AlertEscalationAttempt
from dashboard.selectors.alerts import alert_escalate_after, alert_line
from dashboard.services import audit_record
from ingest.models import Alert, AlertStatus
from ingest.services.webhooks import HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, webhook_sign

logger = logging.getLogger(__name__)

ESCALATOR_NAME = "scheduler (escalate_alerts)"
FIRST_RETRY_SECONDS = 30
# A run stops claiming new deliveries after this long: with a hook that times out, one
# run must not hold the scheduler's job for minutes.
RUN_BUDGET_SECONDS = 20
ERROR_MAX_LENGTH = 500


@dataclass
class EscalationRun:
    enrolled: int = 0
    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)


def escalation_delivery_id(alert_id: int) -> str:
    return f"alert-{alert_id}"


def escalation_target(url: str) -> str:
    """The hook as shown to operators: scheme, host and path, never a query that may hold a token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"[:255]


def retry_delay(attempts: int) -> timedelta:
    return timedelta(
        seconds=min(
            FIRST_RETRY_SECONDS * 2 ** max(attempts - 1, 0), settings.ALERT_ESCALATION_RETRY_MAX_SECONDS
        )
    )


def _overdue_alerts_enrol(*, now: datetime) -> int:
    """One pending escalation per open alert older than the threshold (ix_alerts_open)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO dashboard_alertescalation
                (alert_id, status, created_at, attempts, next_attempt_at, target, last_error)
            SELECT a.id, %(pending)s, %(now)s, 0, %(now)s, '', ''
            FROM alerts a
            WHERE a.status = 'open' AND a.created_at < %(cutoff)s
              AND NOT EXISTS (SELECT 1 FROM dashboard_alertescalation x WHERE x.alert_id = a.id)
            ON CONFLICT (alert_id) DO NOTHING
            """,
            {"pending": AlertEscalation.Status.PENDING, "now": now, "cutoff": now - alert_escalate_after()},
        )
        return cursor.rowcount


def escalation_payload(*, alert_id: int, now: datetime) -> dict:
    line = alert_line(alert_id=alert_id, now=now)
    alert = line.alert
    return {
        "type": "alert.escalated",
        "alert": {
            "id": alert.pk,
            "type": alert.alert_type,
            "message": alert.message,
            "critical": line.critical,
            "raised_at": alert.created_at.isoformat(),
            "happened_at": line.happened_at.isoformat() if line.happened_at else None,
            "resident": alert.resident.full_name if alert.resident else None,
            "resident_phone": alert.resident.phone if alert.resident else None,
            "device": alert.device.serial_no if alert.device else None,
            "console_path": reverse("dashboard:alert", args=[alert.pk]),
        },
        "unacknowledged_for_minutes": int((now - alert.created_at).total_seconds() // 60),
    }


@dataclass(frozen=True)
class DeliveryOutcome:
    succeeded: bool
    http_status: int | None = None
    error: str = ""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is the hook's answer, not a new address: followed, urllib would turn the signed
    POST into a bodiless GET elsewhere, and its 200 would read as a delivery."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError(code): a failed attempt, retried later


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)


def escalation_deliver(*, url: str, secret: str, delivery_id: str, payload: dict) -> DeliveryOutcome:
    """POST the signed payload once; any 2xx is success."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    try:
        # Signing inside: a secret that is not whsec_<base64> (InvalidWebhookSecret, a
        # ValueError) is a recorded failed attempt the alert page shows, not a crashed job.
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "iot_care-escalation/1",
                HEADER_ID: delivery_id,
                HEADER_TIMESTAMP: str(timestamp),
                HEADER_SIGNATURE: webhook_sign(
                    secret=secret, delivery_id=delivery_id, timestamp=timestamp, body=body
                ),
            },
        )
        with _NO_REDIRECTS.open(request, timeout=settings.ALERT_ESCALATION_TIMEOUT_SECONDS) as response:
            response.read(4096)
            return DeliveryOutcome(succeeded=200 <= response.status < 300, http_status=response.status)
    except urllib.error.HTTPError as error:
        return DeliveryOutcome(
            succeeded=False, http_status=error.code, error=str(error.reason)[:ERROR_MAX_LENGTH]
        )
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        return DeliveryOutcome(succeeded=False, error=f"{type(error).__name__}: {reason}"[:ERROR_MAX_LENGTH])


def _escalate_next(*, now: datetime, url: str, secret: str, run: EscalationRun) -> bool:
    """Claim one due escalation and deliver it; False when none is due (or all are claimed)."""
    with transaction.atomic():
        escalation = (
            AlertEscalation.objects.select_for_update(skip_locked=True)
            .filter(
                status__in=[AlertEscalation.Status.PENDING, AlertEscalation.Status.RETRYING],
                next_attempt_at__lte=now,
            )
            .order_by("next_attempt_at", "alert_id")
            .first()
        )
        if escalation is None:
            return False
        alert_status = Alert.objects.filter(pk=escalation.alert_id).values_list("status", flat=True).first()
        if alert_status != AlertStatus.OPEN:
            escalation.status = AlertEscalation.Status.CANCELLED
            escalation.save(update_fields=["status"])
            run.cancelled.append(escalation.alert_id)
            return True
        target = escalation_target(url)
        outcome = escalation_deliver(
            url=url,
            secret=secret,
            delivery_id=escalation_delivery_id(escalation.alert_id),
            payload=escalation_payload(alert_id=escalation.alert_id, now=now),
        )
        AlertEscalationAttempt.objects.create(
            escalation=escalation,
            target=target,
            succeeded=outcome.succeeded,
            http_status=outcome.http_status,
            error=outcome.error,
        )
        escalation.attempts += 1
        escalation.target = target
        if outcome.succeeded:
            escalation.status = AlertEscalation.Status.SENT
            escalation.sent_at = timezone.now()
            escalation.last_error = ""
            run.sent.append(escalation.alert_id)
            audit_record(
                actor=None,
                actor_name=ESCALATOR_NAME,
                action="escalated alert",
                target=f"alert {escalation.alert_id}",
                detail=f"to {target} (HTTP {outcome.http_status}, attempt {escalation.attempts})",
            )
        else:
            escalation.status = AlertEscalation.Status.RETRYING
            escalation.last_error = outcome.error
            escalation.next_attempt_at = now + retry_delay(escalation.attempts)
            run.failed.append(escalation.alert_id)
            logger.warning(
                "escalation of alert %s to %s failed (attempt %d): %s",
                escalation.alert_id,
                target,
                escalation.attempts,
                outcome.error,
            )
        escalation.save()
        return True


def alert_escalations_run(*, now: datetime) -> EscalationRun:
    """Enrol overdue open alerts, then deliver every due escalation (within the run's budget)."""
    run = EscalationRun()
    url, secret = settings.ALERT_ESCALATION_WEBHOOK_URL, settings.ALERT_ESCALATION_WEBHOOK_SECRET
    if not url:
        return run  # no hook configured: the console still marks overdue alerts
    run.enrolled = _overdue_alerts_enrol(now=now)
    deadline = time.monotonic() + RUN_BUDGET_SECONDS
    while time.monotonic() < deadline and _escalate_next(now=now, url=url, secret=secret, run=run):
        pass
    return run
