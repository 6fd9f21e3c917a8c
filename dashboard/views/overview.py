"""The overview: queues, consumers, ingest rate, dead letters, alerts, scheduler."""

from __future__ import annotations

from datetime import timedelta

from django.views.generic import TemplateView

from config.replica import replica_status
from dashboard.charts import TimeSeries
from dashboard.filters import OverviewWindowForm
from dashboard.models import BulkJob
from dashboard.selectors import ingest_rate_series, open_alert_count, scheduler_status
from dashboard.selectors.health import health_banners, queue_rows
from dashboard.selectors.retries import retrying_message_count
from dashboard.views.access import StaffRequiredMixin
from ingest.broker.monitoring import dead_letter_queue_waiting, main_queue_consumers, queue_depths
from ingest.broker.rates import queue_rates
from ingest.selectors.dead_letters import dead_letter_counts_by_status

RATE_WINDOWS = {"hour": (timedelta(hours=1), 1), "day": (timedelta(hours=24), 15)}


class OverviewPanelView(StaffRequiredMixin, TemplateView):
    """The overview's live part, fetched every few seconds by the page (no full reload)."""

    template_name = "dashboard/_overview_panel.html"

    def get(self, request, *args, **kwargs):
        self.window_form = OverviewWindowForm(request.GET)
        response = super().get(request, *args, **kwargs)
        if not self.window_form.is_valid():
            response.status_code = 400  # the last hour is shown, with the error saying so
        return response

    def get_context_data(self, **kwargs):
        window_name = self.window_form.window_name()
        window, bucket_minutes = RATE_WINDOWS[window_name]
        series = ingest_rate_series(window=window, bucket_minutes=bucket_minutes)
        times = [int(point.at.timestamp()) for point in series]
        queues = queue_depths()
        return {
            **super().get_context_data(**kwargs),
            "window": window_name,
            "filter_errors": [] if self.window_form.is_valid() else self.window_form.error_lines(),
            "health_banners": health_banners(queues=queues),
            "queues": queue_rows(queues, queue_rates()),
            # None (shown as unknown, never 0) while the broker cannot be asked.
            "consumers": main_queue_consumers(queues),
            "messages_chart": TimeSeries("messages/min", times, [point.messages for point in series]),
            "records_chart": TimeSeries("records/min", times, [point.records for point in series]),
            "dead_letters": dead_letter_counts_by_status(),
            "dead_letter_queue_waiting": dead_letter_queue_waiting(queues),
            "open_alerts": open_alert_count(),
            "retrying_messages": retrying_message_count(),
            "active_jobs": BulkJob.objects.filter(
                status__in=[BulkJob.Status.QUEUED, BulkJob.Status.RUNNING, BulkJob.Status.PAUSED]
            ),
            "scheduler": scheduler_status(),
            "replica": replica_status(),
        }


class OverviewView(OverviewPanelView):
    """The whole page: the same panel, rendered in place the first time."""

    template_name = "dashboard/overview.html"
