"""Browsing the customer's tables. Records with a page of their own (residents, devices,
events, alerts) link there; a device or resident shown in any list links to its page."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.generic import TemplateView

from dashboard.paging import Page, estimated_row_count, keyset_page
from dashboard.records import RECORDS
from dashboard.views.access import StaffRequiredMixin
from ingest.models import Device, Resident


def _spec(slug: str):
    try:
        return RECORDS[slug]
    except KeyError:
        raise Http404(f"no record type {slug}") from None


def _cell(value) -> tuple[object, str | None]:
    """A list cell: the value, and the page it links to when it is a device or a resident."""
    if isinstance(value, Device):
        return value.serial_no, reverse("dashboard:device", args=[value.pk])
    if isinstance(value, Resident):
        return value.full_name, reverse("dashboard:resident", args=[value.pk])
    return value, None


def _record_url(spec, record) -> str:
    if spec.detail_url_name:
        return reverse(spec.detail_url_name, args=[record.pk])
    return reverse("dashboard:record", args=[spec.slug, record.pk])


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
            "rows": [
                (row, _record_url(spec, row), [_cell(getter(row)) for _, getter in spec.columns])
                for row in page.rows
            ],
            "filter_form": form,
            "filter_errors": [] if form.is_valid() else form.error_lines(),
            "filter_query": urlencode(form.query()),
            "estimated_total": estimated_row_count(spec.queryset().model),
        }
        return context


class RecordDetailView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/record_detail.html"

    def get(self, request, *args, slug, pk, **kwargs):
        spec = _spec(slug)
        if spec.detail_url_name:  # the record has a page of its own; old links land there
            return redirect(spec.detail_url_name, pk=pk)
        return super().get(request, *args, slug=slug, pk=pk, **kwargs)

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
        return context
