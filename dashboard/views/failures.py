"""The failed-message workbench: list, groups, detail, and the actions on one dead letter."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlencode

from django.contrib import messages
from django.shortcuts import render
from django.views.generic import DetailView, TemplateView

from core.errors import ApplicationError
from dashboard.charts import TimeSeries
from dashboard.filters import FAILURE_TRENDS, DeadLetterFilterForm, FailureGroupFilterForm, PageForm
from dashboard.paging import Page, keyset_page
from dashboard.selectors.charts import trend_bucket_starts
from dashboard.views.access import (
    ConsoleActionView,
    StaffRequiredMixin,
    application_error_status,
    field_errors_flatten,
)
from ingest.models import DeadLetter
from ingest.selectors.dead_letters import (
    dead_letter_body_view,
    dead_letter_failure_times,
    dead_letter_groups,
    dead_letter_queryset,
    ingest_message_of,
)
from ingest.services.dead_letters import dead_letter_discard, dead_letter_requeue

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


class DeadLetterDetailView(StaffRequiredMixin, DetailView):
    model = DeadLetter
    template_name = "dashboard/dead_letter_detail.html"
    context_object_name = "dead_letter"

    def get_context_data(self, **kwargs):
        dead_letter = self.object
        body = dead_letter_body_view(dead_letter)
        return {
            "edit_body": body.text,
            **super().get_context_data(**kwargs),
            "payload": body.text,
            "body": body,
            "headers_pretty": json.dumps(dead_letter.headers, indent=2, sort_keys=True, default=str),
            "failure_times": dead_letter_failure_times(dead_letter),
            "ledger": ingest_message_of(dead_letter),
            "actions": dead_letter.actions.all(),
        }


class DeadLetterRequeueView(ConsoleActionView):
    """Requeue as it is, or with edited records.

    A refused edit shows the page again with the operator's body, reason and the field
    errors: a redirect would throw away what they typed.
    """

    permission = REQUEUE

    def post(self, request, pk):
        if not request.POST.get("edit"):
            return super().post(request, pk)
        try:
            outcome = self.act(request, pk)
        except ApplicationError as error:
            return self.refused_edit(request, pk, error)
        messages.success(request, outcome)
        return self.back(request, pk)

    def act(self, request, pk):
        edit = bool(request.POST.get("edit"))
        dead_letter = dead_letter_requeue(
            dead_letter_id=pk,
            actor=request.user,
            reason=request.POST.get("reason", ""),
            edited_body=request.POST.get("body", "") if edit else None,
        )
        return f"Message {dead_letter.message_id} requeued (the broker confirmed it)."

    def refused_edit(self, request, pk, error: ApplicationError):
        detail = DeadLetterDetailView(request=request, kwargs={"pk": pk})
        detail.object = detail.get_object()
        context = detail.get_context_data(
            object=detail.object,
            edit_body=request.POST.get("body", ""),
            edit_reason=request.POST.get("reason", ""),
            edit_error=error.message,
            edit_field_errors=field_errors_flatten(error.fields),
        )
        return render(request, detail.template_name, context, status=application_error_status(error))


class DeadLetterDiscardView(ConsoleActionView):
    permission = DISCARD

    def act(self, request, pk):
        dead_letter = dead_letter_discard(
            dead_letter_id=pk, actor=request.user, reason=request.POST.get("reason", "")
        )
        return f"Message {dead_letter.message_id} discarded."
