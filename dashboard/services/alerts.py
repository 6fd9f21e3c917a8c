"""Carers acting on alerts: acknowledge (with a note) and resolve, each audited.

Acting on an alert also stops its escalation if the on-call hook has not been reached yet.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError
from dashboard.models import AlertAction, AlertEscalation
from dashboard.services import audit_record
from ingest.models import Alert, AlertStatus

NOTE_MAX_LENGTH = 2000


def _note_clean(note: str) -> str:
    note = note.strip()
    if len(note) > NOTE_MAX_LENGTH:
        raise ApplicationError(f"The note is longer than {NOTE_MAX_LENGTH} characters.", code="invalid")
    return note


def _escalation_cancel(alert_id: int) -> None:
    AlertEscalation.objects.filter(
        alert_id=alert_id, status__in=[AlertEscalation.Status.PENDING, AlertEscalation.Status.RETRYING]
    ).update(status=AlertEscalation.Status.CANCELLED)


def _audit_detail(alert: Alert, note: str) -> str:
    return alert.message[:500] + (f"\nNote: {note}" if note else "")


def _alert_action_record(*, alert: Alert, action: str, actor: AbstractBaseUser, note: str) -> None:
    """What every carer's action on an alert leaves: its note, no escalation still to send, the audit."""
    AlertAction.objects.create(
        alert=alert, action=action, actor=actor, actor_name=actor.get_username(), note=note
    )
    _escalation_cancel(alert.pk)
    audit_record(
        actor=actor, action=f"{action} alert", target=f"alert {alert.pk}", detail=_audit_detail(alert, note)
    )


@transaction.atomic
def alert_acknowledge(*, alert_id: int, actor: AbstractBaseUser, note: str = "") -> Alert:
    """Mark an open alert acknowledged, recording who, when and their note."""
    note = _note_clean(note)
    updated = Alert.objects.filter(pk=alert_id, status=AlertStatus.OPEN).update(
        status=AlertStatus.ACKNOWLEDGED, acknowledged_at=timezone.now(), acknowledged_by=actor.get_username()
    )
    if not updated:
        raise ApplicationError(
            f"Alert {alert_id} is not open: someone else may have acted on it.", code="conflict"
        )
    alert = Alert.objects.get(pk=alert_id)
    _alert_action_record(alert=alert, action=AlertAction.Action.ACKNOWLEDGED, actor=actor, note=note)
    return alert


@transaction.atomic
def alert_resolve(*, alert_id: int, actor: AbstractBaseUser, note: str = "") -> Alert:
    """Close an open or acknowledged alert. Resolving an open one also counts as acknowledging it."""
    note = _note_clean(note)
    alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
    if alert is None:
        raise ApplicationError(f"There is no alert {alert_id}.", code="not_found")
    if alert.status == AlertStatus.RESOLVED:
        raise ApplicationError(f"Alert {alert_id} is already resolved.", code="conflict")
    alert.status = AlertStatus.RESOLVED
    update_fields = ["status"]
    if alert.acknowledged_at is None:
        # The customer's reports read acknowledged_at as "someone responded".
        alert.acknowledged_at, alert.acknowledged_by = timezone.now(), actor.get_username()
        update_fields += ["acknowledged_at", "acknowledged_by"]
    alert.save(update_fields=update_fields)
    _alert_action_record(alert=alert, action=AlertAction.Action.RESOLVED, actor=actor, note=note)
    return alert
