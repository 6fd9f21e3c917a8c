"""The retry tiers, like Sidekiq's Retries tab: what waits, why, when it comes due; "retry now"."""

from __future__ import annotations

from django.shortcuts import redirect
from django.views.generic import TemplateView

from dashboard.selectors.retries import retry_overview
from dashboard.services.retries import retrying_message_retry_now
from dashboard.views.access import ConsoleActionView, StaffRequiredMixin
from ingest.broker.monitoring import queue_depths

RETRY_NOW = "ingest.requeue_deadletter"


class RetryTiersView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/retries.html"

    def get_context_data(self, **kwargs):
        queues = queue_depths()
        return {
            **super().get_context_data(**kwargs),
            "retries": retry_overview(queues=queues),
            "broker_unreachable": queues is None,
            "can_retry_now": self.request.user.has_perm(RETRY_NOW),
        }


class RetryNowView(ConsoleActionView):
    """POST: move one waiting message out of its tier to the workers (operators only)."""

    permission = RETRY_NOW

    def act(self, request, message_id):
        outcome = retrying_message_retry_now(message_id=message_id, actor=request.user)
        return f"Message {outcome.message_id} moved from {outcome.tier} to {outcome.due_queue}: a worker tries it now."

    def back(self, request, *args, **kwargs):
        return redirect("dashboard:retries")
