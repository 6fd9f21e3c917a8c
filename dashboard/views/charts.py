"""Charts of a resident's or a device's readings: the page, and the JSON its script draws."""

from __future__ import annotations

from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.views import View
from django.views.generic import TemplateView

from dashboard.filters import ChartForm
from dashboard.selectors.charts import reading_chart, series_metrics
from dashboard.views.access import StaffRequiredMixin
from ingest.models import Device, Resident


class ChartSubjectMixin:
    """The resident or device named by the URL (404 if none) and the metrics it has."""

    subject_kind = "device"  # or "resident"

    def load_subject(self) -> None:
        if self.subject_kind == "resident":
            self.subject = get_object_or_404(Resident, pk=self.kwargs["pk"])
            self.devices = dict(self.subject.devices.order_by("serial_no").values_list("pk", "serial_no"))
        else:
            self.subject = get_object_or_404(Device, pk=self.kwargs["pk"])
            self.devices = {self.subject.pk: self.subject.serial_no}
        self.metric_devices = series_metrics(list(self.devices))
        self.form = ChartForm(self.request.GET, metrics=list(self.metric_devices))

    def subject_title(self) -> str:
        return f"{self.subject_kind.capitalize()} {self.subject}"


class ChartView(ChartSubjectMixin, StaffRequiredMixin, TemplateView):
    """The chart on its own page; the same chart is included in the resident and device pages."""

    template_name = "dashboard/chart.html"

    def get(self, request, *args, **kwargs):
        self.load_subject()
        response = super().get(request, *args, **kwargs)
        if not self.form.is_valid():
            response.status_code = 400
        return response

    def get_context_data(self, **kwargs):
        valid = self.form.is_valid()
        return {
            **super().get_context_data(**kwargs),
            "subject": self.subject,
            "subject_kind": self.subject_kind,
            "subject_title": self.subject_title(),
            "filter_errors": [] if valid else self.form.error_lines(),
            "chart_query": self.request.GET.urlencode() if valid else "",
        }


class ChartDataView(ChartSubjectMixin, StaffRequiredMixin, View):
    """The chart's series as JSON: buckets of min/max/average, and the window's totals."""

    def get(self, request, *args, **kwargs):
        self.load_subject()
        form = self.form
        if not form.is_valid():
            described = "; ".join(f"{label}: {message}" for label, message in form.error_lines())
            return JsonResponse(
                {
                    "error": f"The chart's query is not valid ({described}).",
                    "fields": {name: list(messages) for name, messages in form.errors.items()},
                },
                status=400,
            )
        metric, window = form.cleaned_data["metric"], form.cleaned_data["window"]
        since, until = form.cleaned_data["since"], form.cleaned_data["until"]
        payload = {
            "subject": self.subject_title(),
            "metrics": list(self.metric_devices),
            "metric": metric,
            "window": window,
            "since": since.isoformat(),
            "until": until.isoformat(),
        }
        if metric is None:  # nothing was ever measured: no chart, and no query to make
            return JsonResponse(
                {**payload, "unit": "", "bucket_seconds": 0, "times": [], "series": [], "readings": 0}
            )
        chart = reading_chart(
            devices={pk: self.devices[pk] for pk in self.metric_devices[metric]},
            metric=metric,
            since=since,
            until=until,
        )
        return JsonResponse(
            {
                **payload,
                "unit": chart.unit,
                "bucket_seconds": chart.bucket_seconds,
                "times": chart.times,
                "readings": chart.readings,
                "series": [
                    {
                        "device": one.serial_no,
                        "device_id": one.device_id,
                        "min": one.minimum,
                        "max": one.maximum,
                        "avg": one.average,
                        "readings": one.readings,
                        "low": one.low,
                        "high": one.high,
                        "mean": one.mean,
                    }
                    for one in chart.series
                ],
            }
        )


class DeviceChartView(ChartView):
    subject_kind = "device"


class ResidentChartView(ChartView):
    subject_kind = "resident"


class DeviceChartDataView(ChartDataView):
    subject_kind = "device"


class ResidentChartDataView(ChartDataView):
    subject_kind = "resident"
