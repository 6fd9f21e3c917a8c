"""Console and admin sessions end after a period without activity, and after a maximum age.

Django's own settings give the maximum age (``SESSION_COOKIE_AGE``) and a cookie that
ends with the browser. The idle limit is kept here rather than by saving the session on
every request: the console's live panels refresh themselves every few seconds, and an
open tab nobody looks at is not activity.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in

STARTED_AT = "session_started_at"
ACTIVE_AT = "session_active_at"
# Recording activity writes the session row: do it at most this often.
ACTIVITY_RESOLUTION_SECONDS = 60


def is_background_refresh(request) -> bool:
    """A page's script asking for fresh data, not a person: a live panel's fetch (console.js
    sends this header), or a page's alert stream (EventSource cannot set headers, but it
    always asks for text/event-stream)."""
    return request.headers.get("X-Requested-With") == "fetch" or request.headers.get("Accept", "").startswith(
        "text/event-stream"
    )


def _session_started(sender, request, user, **kwargs) -> None:
    """A login starts both clocks, even on a session that was in use before."""
    now = time.time()
    request.session[STARTED_AT] = now
    request.session[ACTIVE_AT] = now


# Connected when the middleware is loaded, i.e. wherever sessions are in use.
user_logged_in.connect(_session_started, dispatch_uid="session-lifetime-start")


class SessionLifetimeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            self._enforce(request)
        return self.get_response(request)

    def _enforce(self, request) -> None:
        session = request.session
        now = time.time()
        started_at = session.setdefault(STARTED_AT, now)
        active_at = session.get(ACTIVE_AT, started_at)
        idle_for = now - active_at
        if idle_for > settings.SESSION_IDLE_TIMEOUT_SECONDS or now - started_at > settings.SESSION_COOKIE_AGE:
            logout(request)
            minutes = settings.SESSION_IDLE_TIMEOUT_SECONDS // 60
            messages.info(
                request,
                f"You were logged out after {minutes} minutes without activity."
                if idle_for > settings.SESSION_IDLE_TIMEOUT_SECONDS
                else "Your session reached its maximum age; please log in again.",
            )
            return
        if not is_background_refresh(request) and now - active_at >= ACTIVITY_RESOLUTION_SECONDS:
            session[ACTIVE_AT] = now
