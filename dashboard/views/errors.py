"""The site's 400/403/404/500 pages: the console's own style, with the request id to quote.

The API answers its own errors in its JSON shape (DRF's exception handler); these pages are
what everything else shows, including an unknown /api/ address (as JSON there too).
"""

from __future__ import annotations

from django.http import JsonResponse
from django.shortcuts import render

from config.observability import request_id_var

ERRORS = {
    400: ("bad_request", "Bad request", "The request could not be understood; nothing was changed."),
    403: (
        "forbidden",
        "Not allowed",
        "You may not do this, or the form had expired: reload the page and retry.",
    ),
    404: ("not_found", "Not found", "There is nothing at this address."),
    500: ("server_error", "Something went wrong", "The error was logged; nothing you can fix from here."),
}


def _error_response(request, status: int):
    code, title, explanation = ERRORS[status]
    request_id = getattr(request, "request_id", None) or request_id_var.get()
    if request.path.startswith("/api/"):
        return JsonResponse({"code": code, "message": explanation, "request_id": request_id}, status=status)
    # No user, messages or database here: the page must render even when those are what failed.
    return render(
        request,
        "dashboard/error.html",
        {"status": status, "title": title, "explanation": explanation, "request_id": request_id},
        status=status,
    )


def bad_request(request, exception=None):
    return _error_response(request, 400)


def permission_denied(request, exception=None):
    return _error_response(request, 403)


def page_not_found(request, exception=None):
    return _error_response(request, 404)


def server_error(request):
    return _error_response(request, 500)


def csrf_failure(request, reason=""):
    return _error_response(request, 403)
