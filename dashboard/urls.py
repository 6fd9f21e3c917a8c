from django.contrib.auth import views as auth_views
from django.urls import path

from dashboard.views import (
    alerts,
    bulk,
    care,
    charts,
    failed_message,
    failures,
    overview,
    records,
    retries,
    scheduler,
)

app_name = "dashboard"

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="dashboard/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="dashboard:login"), name="logout"),
    path("", overview.OverviewView.as_view(), name="overview"),
    path("overview/panel/", overview.OverviewPanelView.as_view(), name="overview-panel"),
    path("failed/", failures.DeadLetterListView.as_view(), name="dead-letters"),
    path("failed/groups/", failures.DeadLetterGroupsView.as_view(), name="dead-letter-groups"),
    path("failed/bulk/", bulk.BulkPlanCreateView.as_view(), name="dead-letter-bulk"),
    path("failed/<int:pk>/", failed_message.DeadLetterDetailView.as_view(), name="dead-letter"),
    path("failed/<int:pk>/body/", failed_message.DeadLetterBodyView.as_view(), name="dead-letter-body"),
    path(
        "failed/<int:pk>/requeue/", failed_message.DeadLetterRequeueView.as_view(), name="dead-letter-requeue"
    ),
    path("failed/<int:pk>/discard/", failures.DeadLetterDiscardView.as_view(), name="dead-letter-discard"),
    path("scheduler/", scheduler.SchedulerView.as_view(), name="scheduler"),
    path("scheduler/jobs/<slug:job_id>/", scheduler.SchedulerRequestView.as_view(), name="scheduler-request"),
    path("audit/", bulk.AuditTrailView.as_view(), name="audit"),
    path("jobs/", bulk.BulkJobListView.as_view(), name="jobs"),
    path("jobs/<int:pk>/", bulk.BulkJobDetailView.as_view(), name="job-detail"),
    path("jobs/<int:pk>/cancel/", bulk.BulkJobCancelView.as_view(), name="job-cancel"),
    path("devices/<int:pk>/status/", care.DeviceStatusView.as_view(), name="device-status"),
    path("devices/<int:pk>/keys/issue/", care.DeviceKeyIssueView.as_view(), name="device-key-issue"),
    path("devices/<int:pk>/keys/revoke/", care.DeviceKeysRevokeView.as_view(), name="device-key-revoke"),
    path("retries/", retries.RetryTiersView.as_view(), name="retries"),
    path("retries/<uuid:message_id>/retry-now/", retries.RetryNowView.as_view(), name="retry-now"),
    path("charts/device/<int:pk>/", charts.DeviceChartView.as_view(), name="chart-device"),
    path("charts/device/<int:pk>/data/", charts.DeviceChartDataView.as_view(), name="chart-device-data"),
    path("charts/resident/<int:pk>/", charts.ResidentChartView.as_view(), name="chart-resident"),
    path(
        "charts/resident/<int:pk>/data/", charts.ResidentChartDataView.as_view(), name="chart-resident-data"
    ),
    path("alerts/", alerts.AlertListView.as_view(), name="alerts"),
    path("alerts/stream/", alerts.AlertStreamView.as_view(), name="alert-stream"),
    path("alerts/<int:pk>/", alerts.AlertDetailView.as_view(), name="alert"),
    path("alerts/<int:pk>/acknowledge/", alerts.AlertAcknowledgeView.as_view(), name="alert-acknowledge"),
    path("alerts/<int:pk>/resolve/", alerts.AlertResolveView.as_view(), name="alert-resolve"),
    path("records/alerts/", alerts.AlertRecordRedirectView.as_view()),
    path("records/alerts/<int:pk>/", alerts.AlertRecordRedirectView.as_view()),
    path("records/<slug:slug>/", records.RecordListView.as_view(), name="records"),
    path("records/<slug:slug>/<int:pk>/", records.RecordDetailView.as_view(), name="record"),
    path("residents/<int:pk>/", care.ResidentView.as_view(), name="resident"),
    path("devices/<int:pk>/", care.DeviceView.as_view(), name="device"),
    path("events/<int:pk>/", care.EventView.as_view(), name="event"),
    path(
        "devices/<int:pk>/keys/issued/<slug:token>/",
        care.DeviceKeyHandoverView.as_view(),
        name="device-key-handover",
    ),
    path(
        "devices/<int:pk>/keys/<slug:prefix>/revoke/",
        care.DeviceKeyRevokeOneView.as_view(),
        name="device-key-revoke-one",
    ),
    path("failed/bulk/plans/<slug:token>/", bulk.BulkPlanView.as_view(), name="bulk-plan"),
    path(
        "failed/bulk/plans/<slug:token>/confirm/",
        bulk.BulkPlanConfirmView.as_view(),
        name="bulk-plan-confirm",
    ),
    path("jobs/<int:pk>/resume/", bulk.BulkJobResumeView.as_view(), name="job-resume"),
]
