"""Bulk actions on failed messages (plan, confirm, follow the job) and the audit trail."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.generic import DetailView, TemplateView

from core.errors import ApplicationError
from dashboard.filters import AuditFilterForm, bulk_choice_parse
from dashboard.models import BulkAction, BulkJob
from dashboard.paging import Page, keyset_page
from dashboard.selectors.audit import audit_page
from dashboard.selectors.bulk_plans import bulk_plan_sample
from dashboard.services.bulk_jobs import (
    bulk_job_cancel,
    bulk_job_resume,
    bulk_plan_confirm,
    bulk_plan_create,
    bulk_plan_get,
)
from dashboard.views.access import ConsoleActionView, StaffRequiredMixin, application_error_status
from dashboard.views.failures import DISCARD, REQUEUE, FilteredListMixin


def _permission_for(action: str | None) -> str:
    return DISCARD if action == BulkAction.DISCARD else REQUEUE


class BulkPlanCreateView(ConsoleActionView):
    """Plan a bulk action over the selected messages, everything matching the filter, or a group.

    Nothing is acted on here: the plan page shows what would be, and only its
    confirmation queues the job.
    """

    def dispatch(self, request, *args, **kwargs):
        self.permission = _permission_for(request.POST.get("action"))
        return super().dispatch(request, *args, **kwargs)

    def act(self, request):
        self.plan = bulk_plan_create(
            action=request.POST.get("action", ""), choice=bulk_choice_parse(request.POST), actor=request.user
        )
        return ""

    def back(self, request, *args, **kwargs):
        if getattr(self, "plan", None) is not None:
            return redirect("dashboard:bulk-plan", token=self.plan.token)
        return super().back(request, *args, **kwargs)


class BulkPlanView(StaffRequiredMixin, TemplateView):
    """What the planned action would touch: the count, by error class, and a sample."""

    template_name = "dashboard/bulk_plan.html"

    def get(self, request, *args, token: str, **kwargs):
        try:
            plan = bulk_plan_get(token=token, actor=request.user)
        except ApplicationError as error:
            context = {"refusal": error.message}
            return render(request, self.template_name, context, status=application_error_status(error))
        can_act = request.user.has_perm(_permission_for(plan.action))
        context = {
            "plan": plan,
            "error_classes": [
                (error_class, f"{count:,}") for error_class, count in plan.selection.error_classes
            ],
            "sample": bulk_plan_sample(plan),
            "can_act": can_act,
            "is_discard": plan.action == BulkAction.DISCARD,
        }
        return self.render_to_response(context)


class BulkPlanConfirmView(ConsoleActionView):
    """Queue the job for exactly the planned set; a refusal shows the plan again with why."""

    def dispatch(self, request, *args, token: str, **kwargs):
        # The permission of the planned action, whatever the form says.
        action = BulkAction.REQUEUE
        if request.user.is_authenticated:
            try:
                action = bulk_plan_get(token=token, actor=request.user).action
            except ApplicationError:
                pass  # refused with its reason in post()
        self.permission = _permission_for(action)
        return super().dispatch(request, *args, token=token, **kwargs)

    def post(self, request, token: str):
        try:
            job = bulk_plan_confirm(
                token=token,
                actor=request.user,
                reason=request.POST.get("reason", ""),
                confirmed_count=request.POST.get("confirmed_count", ""),
            )
        except ApplicationError as error:
            if error.code in ("not_found", "expired", "conflict"):
                return render(
                    request,
                    "dashboard/bulk_plan.html",
                    {"refusal": error.message},
                    status=application_error_status(error),
                )
            messages.error(request, error.message)
            return redirect("dashboard:bulk-plan", token=token)
        messages.success(request, f"{job.title}: queued as job {job.pk}.")
        return redirect("dashboard:job-detail", pk=job.pk)


class BulkJobListView(FilteredListMixin, StaffRequiredMixin, TemplateView):
    template_name = "dashboard/jobs.html"

    def get_context_data(self, **kwargs):
        page = keyset_page(BulkJob.objects.select_related("created_by"), cursor=self.filter_form.cursor())
        return {**super().get_context_data(**kwargs), **self.filter_context(), "page": page}


class BulkJobDetailView(StaffRequiredMixin, DetailView):
    """A job's progress; the page follows it until it finishes (console.js: data-refresh-url), then stops."""

    model = BulkJob
    template_name = "dashboard/job_detail.html"
    context_object_name = "job"

    def get_queryset(self):
        return BulkJob.objects.select_related("created_by")

    def get_context_data(self, **kwargs):
        job = self.object
        return {
            **super().get_context_data(**kwargs),
            "audit_entry": job.audit_entries.order_by("at", "pk").first(),
            "can_control": self.request.user.has_perm("dashboard.change_bulkjob"),
        }

    def get_template_names(self):
        if self.request.GET.get("fragment"):
            return ["dashboard/_job_progress.html"]
        return [self.template_name]


class BulkJobCancelView(ConsoleActionView):
    permission = "dashboard.change_bulkjob"

    def act(self, request, pk):
        job = bulk_job_cancel(job_id=pk, actor=request.user)
        if job.status == BulkJob.Status.CANCELLED:
            return f"Job {job.pk} cancelled."
        return f"Job {job.pk} will stop after its current chunk."


class BulkJobResumeView(ConsoleActionView):
    permission = "dashboard.change_bulkjob"

    def act(self, request, pk):
        job = bulk_job_resume(job_id=pk, actor=request.user)
        return f"Job {job.pk} resumed: it continues after the last message it handled."


class AuditTrailView(FilteredListMixin, StaffRequiredMixin, TemplateView):
    template_name = "dashboard/audit.html"
    filter_form_class = AuditFilterForm

    def get_context_data(self, **kwargs):
        form = self.filter_form
        if form.is_valid():
            page = audit_page(filters=form.filters(), cursor=form.cursor())
        else:
            page = Page([], None)  # nothing rather than more than was asked for
        return {**super().get_context_data(**kwargs), **self.filter_context(), "page": page}
