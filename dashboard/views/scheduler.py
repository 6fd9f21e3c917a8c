"""The scheduler in the console: jobs, their runs, run now / pause / resume, collection sources."""

from __future__ import annotations

from django.views.generic import TemplateView

from dashboard.views.access import ConsoleActionView, StaffRequiredMixin
from scheduler.selectors import collection_sources, scheduled_jobs, scheduler_state
from scheduler.services.control import scheduler_request_create


class SchedulerView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/scheduler.html"

    def get_context_data(self, **kwargs):
        return {
            **super().get_context_data(**kwargs),
            "state": scheduler_state(),
            "jobs": scheduled_jobs(),
            "sources": collection_sources(),
        }


class SchedulerRequestView(ConsoleActionView):
    permission = "scheduler.add_schedulerrequest"

    def act(self, request, job_id):
        scheduler_request = scheduler_request_create(
            job_id=job_id, action=request.POST.get("action", ""), actor=request.user
        )
        return f"{scheduler_request.get_action_display()} of {job_id} sent to the scheduler; it applies it within seconds."
