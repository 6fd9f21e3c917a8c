"""Browsing the customer's tables; devices also have their own actions (alerts: ``alerts``)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.generic import TemplateView

from dashboard.records import RECORDS
from dashboard.selectors import Page, estimated_row_count, keyset_page
from dashboard.services import (
    device_key_issue_audited,
    device_keys_revoke_audited,
    device_status_change,
)
from dashboard.views.access import ConsoleActionView, StaffRequiredMixin
from ingest.models import Device, DeviceAPIKey, DeviceStatus


def _spec(slug: str):
    try:
        return RECORDS[slug]
    except KeyError:
        raise Http404(f"no record type {slug}") from None


class RecordListView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/records.html"

    def get(self, request, *args, slug, **kwargs):
        self.spec = _spec(slug)
        self.filter_form = self.spec.filter_form_class(request.GET)
        response = super().get(request, *args, slug=slug, **kwargs)
        if not self.filter_form.is_valid():
            response.status_code = 400
        return response

    def get_context_data(self, slug, **kwargs):
        spec, form = self.spec, self.filter_form
        page = Page([], None)  # a filter that cannot be understood shows nothing, not everything
        if form.is_valid():
            filters, cursor = form.filters(), form.cursor()
            page = spec.special_page(filters, cursor) if spec.special_page else None
            if page is None:
                page = keyset_page(spec.filtered(filters), cursor=cursor, time_field=spec.time_order)
        context = {
            **super().get_context_data(**kwargs),
            "spec": spec,
            "specs": RECORDS.values(),
            "page": page,
            "rows": [(row, [getter(row) for _, getter in spec.columns]) for row in page.rows],
            "filter_form": form,
            "filter_errors": [] if form.is_valid() else form.error_lines(),
            "filter_query": urlencode(form.query()),
            "estimated_total": estimated_row_count(spec.queryset().model),
        }
        return context


class RecordDetailView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/record_detail.html"

    def get_context_data(self, slug, pk, **kwargs):
        spec = _spec(slug)
        record = get_object_or_404(spec.queryset(), pk=pk)
        fields = [(field.verbose_name, getattr(record, field.name)) for field in record._meta.concrete_fields]
        context = {
            **super().get_context_data(**kwargs),
            "spec": spec,
            "specs": RECORDS.values(),
            "record": record,
            "fields": fields,
        }
        if isinstance(record, Device):
            context["keys"] = DeviceAPIKey.objects.filter(device=record).order_by("-created")
            context["device_statuses"] = DeviceStatus.choices
        return context


class DeviceStatusView(ConsoleActionView):
    permission = "ingest.change_device"

    def act(self, request, pk):
        device = device_status_change(device_id=pk, status=request.POST.get("status", ""), actor=request.user)
        return f"Device {device.serial_no} is now {device.status}."


class DeviceKeyRevokeView(ConsoleActionView):
    permission = "ingest.manage_device_keys"

    def act(self, request, pk):
        device = get_object_or_404(Device, pk=pk)
        revoked = device_keys_revoke_audited(device=device, actor=request.user)
        return f"Revoked {revoked} key(s) of {device.serial_no}."


# no-store: the page holds a live device key; no browser or proxy cache may keep it.
@method_decorator(never_cache, name="dispatch")
class DeviceKeyIssueView(ConsoleActionView):
    """Issues a key and shows it in this response only: it is never stored or shown again."""

    permission = "ingest.manage_device_keys"

    def post(self, request, pk):
        device = get_object_or_404(Device, pk=pk)
        key = device_key_issue_audited(
            device=device, name=request.POST.get("name", "")[:50], actor=request.user
        )
        return render(
            request,
            "dashboard/device_key_issued.html",
            {"device": device, "key": key, "specs": RECORDS.values()},
        )
