"""The failed-message workbench: list, groups and discard (one message's page: failed_message)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlencode

from django.views.generic import TemplateView

from dashboard.charts import TimeSeries
from dashboard.filters import FAILURE_TRENDS, DeadLetterFilterForm, FailureGroupFilterForm, PageForm
from dashboard.paging import Page, keyset_page
from dashboard.selectors.charts import trend_bucket_starts
from dashboard.views.access import ConsoleActionView, StaffRequiredMixin
from ingest.selectors.dead_letters import dead_letter_groups, dead_letter_queryset
from ingest.selectors.failed_message import device_serials_attach, relayed_devices_attach
from ingest.services.dead_letters import dead_letter_discard

REQUEUE = "ingest.requeue_deadletter"
DISCARD = "ingest.discard_deadletter"


class FilteredListMixin:
    """A list page whose filters come from one ``FilterForm``: a bad value is a 400 naming the field."""

    filter_form_class = PageForm

    def get(self, request, *args, **kwargs):
        self.filter_form = self.filter_form_class(request.GET)
        response = super().get(request, *args, **kwargs)
        if not self.filter_form.is_valid():
            response.status_code = 400
        return response

    def filter_context(self) -> dict:
        form = self.filter_form
        return {
            "filter_form": form,
            "filter_errors": [] if form.is_valid() else form.error_lines(),
            "filter_query": urlencode(form.query()),
        }


class DeadLetterListView(FilteredListMixin, StaffRequiredMixin, TemplateView):
    template_name = "dashboard/dead_letters.html"
    filter_form_class = DeadLetterFilterForm

    def get_context_data(self, **kwargs):
        form = self.filter_form
        if form.is_valid():
            page = keyset_page(dead_letter_queryset(form.filters()), cursor=form.cursor())
            device_serials_attach(page.rows)
            relayed_devices_attach(page.rows)
        else:
            page = Page([], None)  # nothing rather than more than was asked for
        return {
            **super().get_context_data(**kwargs),
            **self.filter_context(),
            "page": page,
            "filters": form.query(),
        }


class DeadLetterGroupsView(FilteredListMixin, StaffRequiredMixin, TemplateView):
    template_name = "dashboard/dead_letter_groups.html"
    filter_form_class = FailureGroupFilterForm

    def get_context_data(self, **kwargs):
        form = self.filter_form
        status = form.filters().get("status", "") if form.is_valid() else None
        trend_label, window, bucket = FAILURE_TRENDS[form.trend_name()]
        trend_times = trend_bucket_starts(window=window, bucket=bucket)
        trend_starts = [datetime.fromtimestamp(start, UTC) for start in trend_times]
        groups = dead_letter_groups(status=status, trend_starts=trend_starts) if status is not None else []
        return {
            **super().get_context_data(**kwargs),
            **self.filter_context(),
            "groups": groups,
            "group_rows": [
                (group, TimeSeries("failures", trend_times, list(group.trend))) for group in groups
            ],
            "status": status,
            "trend_label": trend_label,
            "trend_times_json": json.dumps(trend_times),
        }


class DeadLetterDiscardView(ConsoleActionView):
    permission = DISCARD

    def act(self, request, pk):
        dead_letter = dead_letter_discard(
            dead_letter_id=pk, actor=request.user, reason=request.POST.get("reason", "")
        )
        return f"Message {dead_letter.message_id} discarded."
