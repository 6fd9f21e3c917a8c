"""The failed-message workbench: list, groups, detail, and the actions on dead letters."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.shortcuts import redirect
from django.views.generic import DetailView, TemplateView

from dashboard.models import BulkJob
from dashboard.selectors import (
    audit_trail,
    dead_letter_body_view,
    dead_letter_failure_times,
    dead_letter_filters_of,
    dead_letter_groups,
    dead_letter_queryset,
    ingest_message_of,
    keyset_page,
)
from dashboard.services import bulk_job_cancel, bulk_job_create
from dashboard.views.access import ConsoleActionView, StaffRequiredMixin
from ingest.models import DeadLetter
from ingest.services.dead_letters import dead_letter_discard, dead_letter_requeue

REQUEUE = "ingest.requeue_deadletter"
DISCARD = "ingest.discard_deadletter"


class DeadLetterListView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/dead_letters.html"

    def get_context_data(self, **kwargs):
        filters = dead_letter_filters_of(self.request.GET)
        page = keyset_page(dead_letter_queryset(filters), cursor=self.request.GET.get("before"))
        return {
            **super().get_context_data(**kwargs),
            "page": page,
            "filters": filters,
            "filter_query": urlencode(filters),
            "statuses": DeadLetter.Status.choices,
        }


class DeadLetterGroupsView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/dead_letter_groups.html"

    def get_context_data(self, **kwargs):
        status = self.request.GET.get("status", DeadLetter.Status.DEAD)
        return {
            **super().get_context_data(**kwargs),
            "groups": dead_letter_groups(status=status),
            "status": status,
            "statuses": DeadLetter.Status.choices,
        }


class DeadLetterDetailView(StaffRequiredMixin, DetailView):
    model = DeadLetter
    template_name = "dashboard/dead_letter_detail.html"
    context_object_name = "dead_letter"

    def get_context_data(self, **kwargs):
        dead_letter = self.object
        body = dead_letter_body_view(dead_letter)
        return {
            **super().get_context_data(**kwargs),
            "payload": body.text,
            "body": body,
            "headers_pretty": json.dumps(dead_letter.headers, indent=2, sort_keys=True, default=str),
            "failure_times": dead_letter_failure_times(dead_letter),
            "ledger": ingest_message_of(dead_letter),
            "actions": dead_letter.actions.all(),
        }


class DeadLetterRequeueView(ConsoleActionView):
    permission = REQUEUE

    def act(self, request, pk):
        edited_body = request.POST.get("body")
        dead_letter = dead_letter_requeue(
            dead_letter_id=pk,
            actor=request.user,
            reason=request.POST.get("reason", ""),
            edited_body=edited_body if request.POST.get("edit") else None,
        )
        return f"Message {dead_letter.message_id} requeued (the broker confirmed it)."


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
            ids = [int(value) for value in request.POST.getlist("ids") if value.isdigit()]
            selection, description = {"ids": ids}, f"{len(ids)} selected message(s)"
        elif scope == "group":
            fingerprint = request.POST.get("fingerprint", "")
            selection, description = {"fingerprint": fingerprint}, f"group {fingerprint[:12]}"
        else:
            filters = dead_letter_filters_of(request.POST)
            selection, description = (
                {"filter": filters},
                "all matching " + (urlencode(filters) or "everything"),
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


class BulkJobListView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/jobs.html"

    def get_context_data(self, **kwargs):
        page = keyset_page(
            BulkJob.objects.select_related("created_by"),
            cursor=self.request.GET.get("before"),
        )
        return {**super().get_context_data(**kwargs), "page": page}


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
