"""The care pages: a resident, a device (with its keys and refused requests), an event."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.generic import TemplateView

from dashboard.selectors.care import detail_json, device_care, resident_care
from dashboard.services import device_keys_revoke_audited, device_status_change
from dashboard.services.device_keys import (
    HANDOVER_PAD_COOKIE,
    HANDOVER_SECONDS,
    device_key_handover_open,
    device_key_issue_for_handover,
    device_key_revoke_audited,
)
from dashboard.views.access import ConsoleActionView, StaffRequiredMixin
from ingest.models import Device, DeviceEvent, DeviceStatus, Resident

KEYS_PERMISSION = "ingest.manage_device_keys"


class ResidentView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/resident.html"

    def get_context_data(self, pk, **kwargs):
        resident = get_object_or_404(Resident, pk=pk)
        return {**super().get_context_data(**kwargs), "care": resident_care(resident=resident)}


class DeviceView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/device.html"

    def get_context_data(self, pk, **kwargs):
        device = get_object_or_404(Device.objects.select_related("resident"), pk=pk)
        return {
            **super().get_context_data(**kwargs),
            "care": device_care(device=device),
            "device_statuses": DeviceStatus.choices,
        }


class EventView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/event.html"

    def get_context_data(self, pk, **kwargs):
        event = get_object_or_404(DeviceEvent.objects.select_related("device__resident"), pk=pk)
        return {**super().get_context_data(**kwargs), "event": event, "detail": detail_json(event.detail)}


class DeviceKeyIssueView(ConsoleActionView):
    """POST issues a key and redirects to its one-time hand-over (see dashboard/services/device_keys.py)."""

    permission = KEYS_PERMISSION

    def post(self, request, pk):
        device = get_object_or_404(Device, pk=pk)
        handover = device_key_issue_for_handover(
            session=request.session, device=device, name=request.POST.get("name", "")[:50], actor=request.user
        )
        url = reverse("dashboard:device-key-handover", args=[device.pk, handover.token])
        response = redirect(url)
        response.set_cookie(
            HANDOVER_PAD_COOKIE,
            handover.pad,
            max_age=HANDOVER_SECONDS,
            path=url,
            secure=request.is_secure(),
            httponly=True,
            samesite="Strict",
        )
        return response


# no-store: the page holds a live device key; no browser or proxy cache may keep it.
@method_decorator(never_cache, name="dispatch")
class DeviceKeyHandoverView(StaffRequiredMixin, TemplateView):
    """Shows a newly issued key once; a reload or a second visit shows that it is gone."""

    template_name = "dashboard/device_key_issued.html"

    def get(self, request, pk, token):
        if not request.user.has_perm(KEYS_PERMISSION):
            raise PermissionDenied("Your role may look, not act: ask for the operator role.")
        device = get_object_or_404(Device, pk=pk)
        key = device_key_handover_open(
            session=request.session, device=device, token=token, pad=request.COOKIES.get(HANDOVER_PAD_COOKIE)
        )
        response = render(
            request, self.template_name, {"device": device, "key": key}, status=200 if key else 410
        )
        response.delete_cookie(HANDOVER_PAD_COOKIE, path=request.path, samesite="Strict")
        return response


class DeviceKeyRevokeOneView(ConsoleActionView):
    permission = KEYS_PERMISSION

    def act(self, request, pk, prefix):
        device = get_object_or_404(Device, pk=pk)
        device_key_revoke_audited(device=device, prefix=prefix, actor=request.user)
        return (
            f"Revoked key {prefix} of {device.serial_no}: a device still sending it gets 401 within seconds."
        )


class DeviceStatusView(ConsoleActionView):
    permission = "ingest.change_device"

    def act(self, request, pk):
        device = device_status_change(device_id=pk, status=request.POST.get("status", ""), actor=request.user)
        return f"Device {device.serial_no} is now {device.status}."


class DeviceKeysRevokeView(ConsoleActionView):
    permission = KEYS_PERMISSION

    def act(self, request, pk):
        device = get_object_or_404(Device, pk=pk)
        revoked = device_keys_revoke_audited(device=device, actor=request.user)
        return f"Revoked {revoked} key(s) of {device.serial_no}."
