"""One WSGI application, two middleware stacks: the machine API skips the browser's.

Devices and partner systems call ``/api/v1/`` with a key or a signature, never with a
session cookie, a CSRF token or a login form. The session, authentication, messages,
CSRF, login-lockout and static-file middleware only cost them time (about a fifth of a
device request's CPU), so those paths go through a handler built from
``MACHINE_API_MIDDLEWARE``: the request id, the security headers and Django's
SecurityMiddleware, and clickjacking protection stay. Every other path (the console, the
admin, the API documentation, probes) keeps the full ``MIDDLEWARE``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler


class _MachineApiHandler(WSGIHandler):
    def load_middleware(self, is_async=False):
        # BaseHandler reads settings.MIDDLEWARE; this runs once, at start-up, before any
        # request thread exists, so swapping the list for the duration is safe.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.MACHINE_API_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


class PathRoutedApplication:
    """Send ``MACHINE_API_PATH_PREFIX`` to the lean handler, everything else to the full one."""

    def __init__(self, site: WSGIHandler) -> None:
        self.site = site
        self.machine_api = _MachineApiHandler()
        self.prefix = settings.MACHINE_API_PATH_PREFIX

    def __call__(self, environ, start_response):
        handler = self.machine_api if environ.get("PATH_INFO", "").startswith(self.prefix) else self.site
        return handler(environ, start_response)
