"""The audit trail: console actions and what people did to single messages, newest first.

Two tables, one list: each is read by its own index up to a page, and the two are
merged. A bulk job is one console entry, however many messages it touched (its
per-message rows stay on each message's page).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.db.models import F, Q
from django.urls import reverse

from dashboard.filters import Cursor
from dashboard.models import AuditEntry
from dashboard.paging import PAGE_SIZE, Page
from ingest.models import DeadLetterAction

CONSOLE_ENTRY, MESSAGE_ACTION = 0, 1
# "job 12", "alert 7": an object named by kind and id is matched exactly ("job 1" is not "job 12").
_NAMED_OBJECT = re.compile(r"[a-z ]+ \d+", re.IGNORECASE)


@dataclass(frozen=True)
class AuditLine:
    at: datetime
    actor: str
    action: str
    target: str
    detail: str
    link: str | None
    source: int
    row_id: int

    @property
    def cursor(self) -> str:
        # The page cursor's id part carries which table too: id * 2 + source.
        return Cursor(self.row_id * 2 + self.source, self.at).to_text()


def _after_cursor(source: int, cursor: Cursor | None) -> Q:
    """Rows that come after the cursor in (at, source, id) descending order."""
    if cursor is None or cursor.at is None:
        return Q()
    at = cursor.at
    row_id, cursor_source = divmod(cursor.last_id, 2)
    if source < cursor_source:
        return Q(at__lte=at)
    if source == cursor_source:
        return Q(at__lt=at) | Q(at=at, pk__lt=row_id)
    return Q(at__lt=at)


def _console_entries(filters: dict, cursor: Cursor | None, size: int) -> list[AuditLine]:
    entries = AuditEntry.objects.filter(_after_cursor(CONSOLE_ENTRY, cursor))
    if who := filters.get("who"):
        entries = entries.filter(actor_name__icontains=who)
    if what := filters.get("what"):
        entries = entries.filter(action__icontains=what)
    if target := filters.get("object"):
        exact = _NAMED_OBJECT.fullmatch(target)
        entries = entries.filter(target__iexact=target) if exact else entries.filter(target__icontains=target)
    if filters.get("since"):
        entries = entries.filter(at__gte=filters["since"])
    if filters.get("until"):
        entries = entries.filter(at__lt=filters["until"])
    return [
        AuditLine(
            at=entry.at,
            actor=entry.actor_name,
            action=entry.action,
            target=entry.target,
            detail=entry.detail,
            link=reverse("dashboard:job-detail", args=[entry.bulk_job_id]) if entry.bulk_job_id else None,
            source=CONSOLE_ENTRY,
            row_id=entry.pk,
        )
        for entry in entries.order_by("-at", "-pk")[:size]
    ]


def _message_actions(filters: dict, cursor: Cursor | None, size: int) -> list[AuditLine]:
    # Matches the partial index deadletteraction_by_people.
    actions = DeadLetterAction.objects.filter(bulk_job_id__isnull=True).exclude(
        action=DeadLetterAction.Action.RECORDED
    )
    actions = actions.filter(_after_cursor(MESSAGE_ACTION, cursor))
    labels = dict(DeadLetterAction.Action.choices)
    if who := filters.get("who"):
        actions = actions.filter(actor_name__icontains=who)
    if what := filters.get("what"):
        codes = [code for code, label in labels.items() if what.lower() in f"{code} {label}".lower()]
        actions = actions.filter(action__in=codes)
    if target := filters.get("object"):
        message = target.lower().removeprefix("message").strip()
        if not message or not re.fullmatch(r"[0-9a-f-]+", message):
            return []  # only messages are acted on one by one; their name is their id
        actions = actions.filter(dead_letter__message_id__icontains=message)
    if filters.get("since"):
        actions = actions.filter(at__gte=filters["since"])
    if filters.get("until"):
        actions = actions.filter(at__lt=filters["until"])
    rows = actions.order_by("-at", "-pk").values(
        "pk",
        "at",
        "actor_name",
        "action",
        "reason",
        "dead_letter_id",
        message_id=F("dead_letter__message_id"),
    )[:size]
    return [
        AuditLine(
            at=row["at"],
            actor=row["actor_name"] or "system",
            action=labels.get(row["action"], row["action"]).lower(),
            target=f"message {row['message_id']}",
            detail=row["reason"],
            link=reverse("dashboard:dead-letter", args=[row["dead_letter_id"]]),
            source=MESSAGE_ACTION,
            row_id=row["pk"],
        )
        for row in rows
    ]


def audit_page(*, filters: dict, cursor: Cursor | None, size: int = PAGE_SIZE) -> Page:
    """One page of the trail, newest first, filtered by who, what, which object and when."""
    lines = _console_entries(filters, cursor, size + 1) + _message_actions(filters, cursor, size + 1)
    lines.sort(key=lambda line: (line.at, line.source, line.row_id), reverse=True)
    if len(lines) <= size:
        return Page(lines, None)
    return Page(lines[:size], lines[size - 1].cursor)
