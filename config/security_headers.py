"""Content-Security-Policy and Permissions-Policy on every response.

The console and the admin run no inline script or style (behaviour lives in
``dashboard/static``), so the policy allows only this origin: an injected ``<script>`` or
``style=`` does nothing. The API's documentation pages (Swagger UI, Redoc) are third-party
pages with a few inline styles and a web worker; they get a policy that allows exactly that.
"""

from __future__ import annotations

from django.conf import settings


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        docs = request.path.startswith(tuple(settings.CONTENT_SECURITY_POLICY_DOCS_PATHS))
        policy = settings.CONTENT_SECURITY_POLICY_DOCS if docs else settings.CONTENT_SECURITY_POLICY
        response.headers.setdefault("Content-Security-Policy", policy)
        response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response
