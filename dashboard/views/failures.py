"""The failed-message workbench: list, groups, discard and bulk jobs (one message's page: failed_message)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.shortcuts import redirect
from django.views.generic import DetailView, TemplateView

from core.errors import ApplicationError
from dashboard.filters import ASCII_DIGITS, ID_MAX, DeadLetterFilterForm, FailureGroupFilterForm, PageForm
from dashboard.models import BulkJob
from dashboard.selectors import (
    Page,
    audit_trail,
    dead_letter_groups,
    dead_letter_queryset,
    keyset_page,
)
from dashboard.selectors.failed_message import device_serials_attach
from dashboard.services import bulk_job_cancel, bulk_job_create
from dashboard.views.access import ConsoleActionView, StaffRequiredMixin
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
        return {
            **super().get_context_data(**kwargs),
            **self.filter_context(),
            "groups": dead_letter_groups(status=status) if status is not None else [],
            "status": status,
        }


class DeadLetterDiscardView(ConsoleActionView):
    permission = DISCARD

    def act(self, request, pk):
        dead_letter = dead_letter_discard(
            dead_letter_id=pk, actor=request.user, reason=request.POST.get("reason", "")
        )
        return f"Message {dead_letter.message_id} discarded."


class BulkActionView(ConsoleActionView):
    """Queue a bulk job over a selection, every letter matching the filter, or a group."""

    def dispatch(self, request, *args, **kwargs):
        action = request.POST.get("action")
        self.permission = DISCARD if action == BulkJob.Action.DISCARD else REQUEUE
        return super().dispatch(request, *args, **kwargs)

    def act(self, request):
        scope = request.POST.get("scope")
        if scope == "selected":
            ids = [value for value in request.POST.getlist("ids") if value]
            if not all(set(value) <= ASCII_DIGITS and int(value) <= ID_MAX for value in ids):
                raise ApplicationError(
                    "the selection holds something that is not a message id", code="invalid"
                )
            ids = [int(value) for value in ids]
            selection, description = {"ids": ids}, f"{len(ids)} selected message(s)"
        elif scope == "group":
            fingerprint = request.POST.get("fingerprint", "")
            selection, description = {"fingerprint": fingerprint}, f"group {fingerprint[:12]}"
        elif scope == "filter":
            form = DeadLetterFilterForm(request.POST)
            form.filters_or_refuse()
            filters = form.query()
            selection, description = (
                {"filter": filters},
                "all matching " + (urlencode(filters) or "everything"),
            )
        else:
            # Never "everything" by default: an unknown scope acts on nothing.
            raise ApplicationError(
                f"unknown scope {scope!r}: choose selected, filter or group", code="invalid"
            )
        self.job = bulk_job_create(
            action=request.POST.get("action", ""),
            selection=selection,
            description=description,
            reason=request.POST.get("reason", ""),
            actor=request.user,
        )
        return f"Bulk {self.job.get_action_display().lower()} of {self.job.total} message(s) queued as job {self.job.pk}."

    def back(self, request, *args, **kwargs):
        if getattr(self, "job", None) is not None:
            return redirect("dashboard:job-detail", pk=self.job.pk)
        return super().back(request, *args, **kwargs)


class BulkJobListView(FilteredListMixin, StaffRequiredMixin, TemplateView):
    template_name = "dashboard/jobs.html"

    def get_context_data(self, **kwargs):
        page = keyset_page(BulkJob.objects.select_related("created_by"), cursor=self.filter_form.cursor())
        return {**super().get_context_data(**kwargs), **self.filter_context(), "page": page}


class BulkJobDetailView(StaffRequiredMixin, DetailView):
    model = BulkJob
    template_name = "dashboard/job_detail.html"
    context_object_name = "job"

    def get_template_names(self):
        if self.request.GET.get("fragment"):
            return ["dashboard/_job_progress.html"]
        return [self.template_name]


class BulkJobCancelView(ConsoleActionView):
    permission = "dashboard.change_bulkjob"

    def act(self, request, pk):
        job = bulk_job_cancel(job_id=pk, actor=request.user)
        return f"Job {job.pk} will stop after its current chunk."


class AuditTrailView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/audit.html"

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "lines": audit_trail()}
