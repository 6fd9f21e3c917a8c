"""Who may see and do what: every page needs an active staff user; actions need a permission."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin, UserPassesTestMixin
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import redirect, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View

from config.sessions import is_background_refresh
from core.errors import ApplicationError


def application_error_status(error: ApplicationError) -> int:
    """The HTTP status of a refusal, as the API would answer it."""
    from core.exception_handler import APPLICATION_ERROR_STATUS

    return APPLICATION_ERROR_STATUS.get(error.code, 400)


def field_errors_flatten(errors, prefix: str = "") -> list[tuple[str, str]]:
    """DRF-shaped errors (``{"readings": {0: {"metric": ["..."]}}}``) as (field path, reason) lines."""
    if isinstance(errors, dict):
        return [
            line
            for name, nested in errors.items()
            for line in field_errors_flatten(nested, f"{prefix}.{name}" if prefix else str(name))
        ]
    if isinstance(errors, list | tuple):
        if any(isinstance(item, dict) for item in errors):  # a list serializer: one entry per item
            return [
                line
                for index, item in enumerate(errors)
                for line in field_errors_flatten(item, f"{prefix}.{index}" if prefix else str(index))
            ]
        return [line for item in errors for line in field_errors_flatten(item, prefix)]
    return [(prefix or "body", str(errors))]


class StaffRequiredMixin(LoginRequiredMixin, UserPassesTestMixin):
    login_url = "dashboard:login"
    # A logged-in user who is not staff gets 403, not a login loop.
    raise_exception = False

    def test_func(self) -> bool:
        user = self.request.user
        return user.is_active and user.is_staff

    def handle_no_permission(self):
        if self.request.user.is_authenticated:
            raise PermissionDenied("The console is for staff only.")
        if is_background_refresh(self.request):
            # fetch() would follow a redirect and put the login page inside the live panel:
            # the page is told instead, and says "session expired" with a link.
            return JsonResponse(
                {"detail": "Session expired: sign in again.", "login_url": resolve_url(self.login_url)},
                status=401,
            )
        return super().handle_no_permission()


class ConsoleActionView(StaffRequiredMixin, View):
    """A POST that changes something: requires ``permission``; reports the outcome as a message."""

    permission: str = ""
    http_method_names = ["post"]

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated and self.permission and not request.user.has_perm(self.permission):
            raise PermissionDenied("Your role may look, not act: ask for the operator role.")
        if request.method == "POST" and request.user.is_authenticated:
            for name, values in request.POST.lists():
                if any("\x00" in value for value in values):
                    # PostgreSQL text cannot hold NUL: refused here rather than failing as a 500.
                    messages.error(request, f"{name}: Null characters are not allowed. Nothing was done.")
                    return self.back(request, *args, **kwargs)
        return super().dispatch(request, *args, **kwargs)

    def post(self, request, *args, **kwargs):
        try:
            outcome = self.act(request, *args, **kwargs)
        except ApplicationError as error:
            messages.error(request, error.message)
            return self.back(request, *args, **kwargs)
        if outcome:
            messages.success(request, outcome)
        return self.back(request, *args, **kwargs)

    def act(self, request, *args, **kwargs) -> str:
        raise NotImplementedError

    def back(self, request, *args, **kwargs):
        target = request.POST.get("next") or request.META.get("HTTP_REFERER")
        safe = target and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
        return redirect(target if safe else "dashboard:overview")
