"""Alerts as a carer needs them: what raised them and when it happened, overdue, escalated.

The customer's ``alerts`` row says when the alert was written, not when the device saw
the fall: a batch sent hours late (a phone back in range) raises its alert hours after
the event. The event's own time comes from the event that raised the alert: recorded
with the alert (``AlertOrigin``) since that link exists, and for older alerts the
nearest critical event of the same type and device before the alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone

from config.replica import read_connection
from dashboard.models import AlertAction, AlertEscalation, AlertEscalationAttempt
from dashboard.records import RECORDS
from ingest.models import Alert, AlertStatus, DeviceEvent
from ingest.services.message_store import CRITICAL_SEVERITY
from scheduler.services.alert_rules import DEVICE_OFFLINE, INACTIVITY

# Alerts the scheduler's rules raise; every other type comes from a critical device event.
RULE_ALERT_TYPES = frozenset({DEVICE_OFFLINE, INACTIVITY})
OPEN_ALERTS_SHOWN = 200


def alert_escalate_after() -> timedelta:
    return timedelta(minutes=settings.ALERT_ESCALATE_MINUTES)


# Said the way a carer says them; other types are shown with their underscores as spaces.
ALERT_TYPE_LABELS = {"sos": "SOS", "fall_detected": "Fall detected", DEVICE_OFFLINE: "Device offline"}


def alert_type_label(alert_type: str) -> str:
    return ALERT_TYPE_LABELS.get(alert_type, alert_type.replace("_", " ").capitalize())


def alert_is_critical(alert: Alert) -> bool:
    return alert.alert_type not in RULE_ALERT_TYPES


@dataclass(frozen=True)
class AlertLine:
    """One alert with what the console shows beside it."""

    alert: Alert
    event: DeviceEvent | None
    # False when the event was inferred (an alert raised before links were recorded).
    event_recorded: bool
    critical: bool
    overdue: bool
    escalation: AlertEscalation | None

    @property
    def label(self) -> str:
        return alert_type_label(self.alert.alert_type)

    @property
    def happened_at(self) -> datetime | None:
        return self.event.occurred_at if self.event else None

    @property
    def raised_late_by(self) -> str:
        """How long after the event the alert was raised ("6 h 54 min"), when over a minute."""
        if self.event is None:
            return ""
        minutes = int((self.alert.created_at - self.event.occurred_at).total_seconds() // 60)
        if minutes < 1:
            return ""
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _alert_queryset() -> QuerySet:
    return Alert.objects.select_related("resident", "device", "origin", "escalation")


def _inferred_events(alerts: list[Alert]) -> dict[int, DeviceEvent]:
    """For alerts of critical events with no recorded origin: the nearest such event before them."""
    candidates = [
        alert.pk
        for alert in alerts
        if alert.device_id and alert_is_critical(alert) and not hasattr(alert, "origin")
    ]
    if not candidates:
        return {}
    with read_connection(DeviceEvent).cursor() as cursor:
        # One index probe per alert (ix_device_events_device_time), in one statement.
        cursor.execute(
            """
            SELECT a.id, e.id
            FROM alerts a
            CROSS JOIN LATERAL (
                SELECT e.id FROM device_events e
                WHERE e.device_id = a.device_id AND e.event_type = a.alert_type
                  AND e.severity >= %s AND e.occurred_at <= a.created_at
                ORDER BY e.occurred_at DESC LIMIT 1
            ) e
            WHERE a.id = ANY(%s)
            """,
            [CRITICAL_SEVERITY, candidates],
        )
        event_of_alert = dict(cursor.fetchall())
    events = DeviceEvent.objects.in_bulk(event_of_alert.values())
    return {alert_id: events[event_id] for alert_id, event_id in event_of_alert.items() if event_id in events}


def _lines(alerts: list[Alert], *, now: datetime) -> list[AlertLine]:
    recorded_events = DeviceEvent.objects.in_bulk(
        [alert.origin.event_id for alert in alerts if hasattr(alert, "origin")]
    )
    inferred = _inferred_events(alerts)
    overdue_before = now - alert_escalate_after()
    lines = []
    for alert in alerts:
        recorded = recorded_events.get(alert.origin.event_id) if hasattr(alert, "origin") else None
        lines.append(
            AlertLine(
                alert=alert,
                event=recorded or inferred.get(alert.pk),
                event_recorded=recorded is not None,
                critical=alert_is_critical(alert),
                overdue=alert.status == AlertStatus.OPEN and alert.created_at < overdue_before,
                escalation=getattr(alert, "escalation", None),
            )
        )
    return lines


def open_alert_lines(*, now: datetime, limit: int = OPEN_ALERTS_SHOWN) -> list[AlertLine]:
    """Open alerts needing attention: critical first, then the longest waiting first."""
    alerts = list(
        _alert_queryset()
        .filter(status=AlertStatus.OPEN)
        .annotate(
            rule_raised=Case(
                When(alert_type__in=RULE_ALERT_TYPES, then=Value(1)),
                default=Value(0),
                output_field=IntegerField(),
            )
        )
        .order_by("rule_raised", "created_at", "id")[:limit]
    )
    return _lines(alerts, now=now)


def alert_lines(alerts: list[Alert], *, now: datetime) -> list[AlertLine]:
    """Lines for a page of alerts read elsewhere (the filtered, keyset-paged history)."""
    return _lines(alerts, now=now)


def alert_history_queryset(filters: dict) -> QuerySet:
    """Every alert matching the list's parsed filters (the records vocabulary)."""
    return RECORDS["alerts"].filtered(filters).select_related("origin", "escalation")


def alert_line(*, alert_id: int, now: datetime) -> AlertLine | None:
    alert = _alert_queryset().filter(pk=alert_id).first()
    return _lines([alert], now=now)[0] if alert else None


@dataclass(frozen=True)
class AlertHistoryLine:
    at: datetime
    who: str
    what: str
    note: str
    target: str = ""
    http_status: int | None = None


@dataclass(frozen=True)
class AlertDetail:
    line: AlertLine
    history: list[AlertHistoryLine]


def alert_detail(*, alert_id: int, now: datetime) -> AlertDetail | None:
    """One alert with its history: raised, each escalation attempt, each carer's action, in order."""
    line = alert_line(alert_id=alert_id, now=now)
    if line is None:
        return None
    alert = line.alert
    history = [AlertHistoryLine(alert.created_at, "system", "raised", alert.message)]
    history += [
        AlertHistoryLine(
            attempt.at,
            "scheduler",
            "escalated" if attempt.succeeded else "escalation failed",
            attempt.error,
            attempt.target,
            attempt.http_status,
        )
        for attempt in AlertEscalationAttempt.objects.filter(escalation_id=alert_id)
    ]
    history += [
        AlertHistoryLine(action.at, action.actor_name, action.get_action_display().lower(), action.note)
        for action in AlertAction.objects.filter(alert_id=alert_id)
    ]
    return AlertDetail(line=line, history=sorted(history, key=lambda entry: entry.at))


def alert_latest_id() -> int:
    """The newest alert's id (0 with none): a page's live stream starts after it."""
    return Alert.objects.order_by("-id").values_list("id", flat=True).first() or 0


# Ids are drawn before commit, so an alert can become visible after a higher id did (two
# workers committing out of order). A stream therefore also looks back this far among open
# alerts; the page drops ids it already shows.
COMMIT_ORDER_SLACK = timedelta(seconds=10)


def alerts_raised_after(
    *, alert_id: int, recent_since: datetime, already_sent: frozenset[int] = frozenset(), limit: int = 20
) -> list[AlertLine]:
    """Alerts newer than ``alert_id``, and open ones raised since ``recent_since``; oldest first.

    Two index reads (primary key and ``ix_alerts_open``): cheap enough for every open
    console to repeat a few times a second.
    """
    alerts = list(
        _alert_queryset()
        .filter(Q(pk__gt=alert_id) | Q(status=AlertStatus.OPEN, created_at__gte=recent_since))
        .exclude(pk__in=already_sent)
        .order_by("id")[:limit]
    )
    return _lines(alerts, now=timezone.now())
