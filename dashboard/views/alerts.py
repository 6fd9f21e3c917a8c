"""Alerts: the list carers work from, one alert's page, its actions, and the live stream.

The stream (server-sent events) pushes each new alert to every open console page. A
stream holds one of the web process's threads while it lasts, so it is bounded twice:
it ends after ``ALERT_STREAM_SECONDS`` (the browser reconnects by itself and says, with
``Last-Event-ID``, where it left off), and a process serves at most
``ALERT_STREAMS_PER_PROCESS`` at once (a page turned away is told to come back later).
A stream finds new alerts by a primary-key range read every ``ALERT_STREAM_POLL_SECONDS``.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db import DatabaseError
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views import View
from django.views.generic import RedirectView, TemplateView

from dashboard.paging import Page, keyset_page
from dashboard.records import RECORDS
from dashboard.selectors.alerts import (
    COMMIT_ORDER_SLACK,
    AlertLine,
    alert_detail,
    alert_escalate_after,
    alert_history_queryset,
    alert_lines,
    alert_type_label,
    alerts_raised_after,
    open_alert_lines,
)
from dashboard.services.alerts import alert_acknowledge, alert_resolve
from dashboard.views.access import ConsoleActionView, StaffRequiredMixin

ALERT_PERMISSION = "ingest.acknowledge_alert"


class AlertListView(StaffRequiredMixin, TemplateView):
    """Open alerts first (critical, then longest waiting), then the history, filtered and paged."""

    template_name = "dashboard/alerts.html"

    def get(self, request, *args, **kwargs):
        self.filter_form = RECORDS["alerts"].filter_form_class(request.GET)
        response = super().get(request, *args, **kwargs)
        if not self.filter_form.is_valid():
            response.status_code = 400
        return response

    def get_context_data(self, **kwargs):
        form, now = self.filter_form, timezone.now()
        page = Page([], None)  # a filter that cannot be understood shows nothing, not everything
        if form.is_valid():
            page = keyset_page(alert_history_queryset(form.filters()), cursor=form.cursor())
        return {
            **super().get_context_data(**kwargs),
            "open_lines": open_alert_lines(now=now),
            "page": page,
            "history": alert_lines(page.rows, now=now),
            "filter_form": form,
            "filter_errors": [] if form.is_valid() else form.error_lines(),
            "filter_query": urlencode(form.query()),
            "escalate_minutes": int(alert_escalate_after().total_seconds() // 60),
        }


class AlertDetailView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/alert_detail.html"

    def get_context_data(self, pk, **kwargs):
        detail = alert_detail(alert_id=pk, now=timezone.now())
        if detail is None:
            raise Http404(f"no alert {pk}")
        return {
            **super().get_context_data(**kwargs),
            "line": detail.line,
            "alert": detail.line.alert,
            "history": detail.history,
            "escalate_minutes": int(alert_escalate_after().total_seconds() // 60),
            "escalation_configured": bool(settings.ALERT_ESCALATION_WEBHOOK_URL),
        }


class AlertRecordRedirectView(RedirectView):
    """The generic records pages' alert addresses, kept for bookmarks and old links (with their filter)."""

    http_method_names = ["get", "head"]
    query_string = True

    def get_redirect_url(self, pk=None):
        return reverse("dashboard:alert", args=[pk]) if pk else reverse("dashboard:alerts")


class AlertAcknowledgeView(ConsoleActionView):
    permission = ALERT_PERMISSION

    def act(self, request, pk):
        alert = alert_acknowledge(alert_id=pk, actor=request.user, note=request.POST.get("note", ""))
        return f"Alert {alert.pk} acknowledged."


class AlertResolveView(ConsoleActionView):
    permission = ALERT_PERMISSION

    def act(self, request, pk):
        alert = alert_resolve(alert_id=pk, actor=request.user, note=request.POST.get("note", ""))
        return f"Alert {alert.pk} resolved."


# --- live stream ---------------------------------------------------------------------

_streams_lock = threading.Lock()
_streams_open = 0
# A gone client is only noticed when a write fails, and every page a carer leaves leaves a
# stream behind until then: a comment every second frees its thread within a second or two.
KEEPALIVE_SECONDS = 1
STREAM_START_GRACE = timedelta(seconds=2)
# When the process already serves its share of streams: come back this much later.
BUSY_RETRY_MILLISECONDS = 5_000


def _stream_slot_take() -> bool:
    global _streams_open
    with _streams_lock:
        if _streams_open >= settings.ALERT_STREAMS_PER_PROCESS:
            return False
        _streams_open += 1
        return True


def _stream_slot_give_back() -> None:
    global _streams_open
    with _streams_lock:
        _streams_open -= 1


def alert_event_data(line: AlertLine) -> dict:
    alert = line.alert
    return {
        "id": alert.pk,
        "type": alert.alert_type,
        "label": alert_type_label(alert.alert_type),
        "critical": line.critical,
        "status": alert.status,
        "message": alert.message,
        "resident": alert.resident.full_name if alert.resident else "",
        "device": alert.device.serial_no if alert.device else "",
        "happened_at": line.happened_at.isoformat() if line.happened_at else None,
        "raised_at": alert.created_at.isoformat(),
        "url": reverse("dashboard:alert", args=[alert.pk]),
    }


def _server_sent_event(*, event: str, data: dict, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _alert_events(*, after: int):
    if not _stream_slot_take():
        yield f"retry: {BUSY_RETRY_MILLISECONDS}\n: busy\n\n"
        return
    try:
        # After a normal end, the browser reconnects in a second with Last-Event-ID.
        yield "retry: 1000\n\n"
        started, connected_at = time.monotonic(), timezone.now()
        deadline = started + settings.ALERT_STREAM_SECONDS
        keepalive_at = started + KEEPALIVE_SECONDS
        last_id, sent_at = after, {}
        while time.monotonic() < deadline:
            now = timezone.now()
            try:
                # The look-back reaches a little before this connection only: what was raised
                # well before the page was shown is on the page or already announced.
                recent_since = max(now - COMMIT_ORDER_SLACK, connected_at - STREAM_START_GRACE)
                lines = alerts_raised_after(
                    alert_id=last_id, recent_since=recent_since, already_sent=frozenset(sent_at)
                )
            except DatabaseError:
                return  # the browser reconnects; the next stream tries again
            for line in lines:
                alert_id = line.alert.pk
                yield _server_sent_event(
                    event="alert", data=alert_event_data(line), event_id=max(last_id, alert_id)
                )
                sent_at[alert_id] = line.alert.created_at
                last_id = max(last_id, alert_id)
            # Sent ids are only needed while the look-back can still find them.
            sent_at = {key: at for key, at in sent_at.items() if at >= now - 2 * COMMIT_ORDER_SLACK}
            if time.monotonic() >= keepalive_at:
                # A comment: keeps proxies from timing the stream out and finds a gone client.
                yield ": keepalive\n\n"
                keepalive_at = time.monotonic() + KEEPALIVE_SECONDS
            time.sleep(settings.ALERT_STREAM_POLL_SECONDS)
    finally:
        _stream_slot_give_back()


def _stream_start(request) -> int:
    for value in (request.headers.get("Last-Event-ID"), request.GET.get("after")):
        # isascii: "²".isdigit() is true, and int("²") a ValueError (a 500).
        if value and value.isascii() and value.isdigit() and len(value) < 19:
            return int(value)
    return 0


class AlertStreamView(View):
    """``text/event-stream`` of new alerts; an expired session gets one ``session-expired`` event.

    Never a redirect to the login page: EventSource would read the login form as a broken
    stream, and a live panel must not end up showing it.
    """

    http_method_names = ["get"]

    def get(self, request):
        user = request.user
        if not (user.is_authenticated and user.is_active and user.is_staff):
            response = HttpResponse(
                _server_sent_event(event="session-expired", data={"login": reverse("dashboard:login")}),
                content_type="text/event-stream",
            )
        else:
            response = StreamingHttpResponse(
                _alert_events(after=_stream_start(request)), content_type="text/event-stream"
            )
        response["Cache-Control"] = "no-store"
        response["X-Accel-Buffering"] = "no"  # a buffering proxy would hold the events back
        return response
