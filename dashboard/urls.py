from django.contrib.auth import views as auth_views
from django.urls import path

from dashboard.views import alerts, failures, overview, records, scheduler

app_name = "dashboard"

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="dashboard/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="dashboard:login"), name="logout"),
    path("", overview.OverviewView.as_view(), name="overview"),
    path("overview/panel/", overview.OverviewPanelView.as_view(), name="overview-panel"),
    path("failed/", failures.DeadLetterListView.as_view(), name="dead-letters"),
    path("failed/groups/", failures.DeadLetterGroupsView.as_view(), name="dead-letter-groups"),
    path("failed/bulk/", failures.BulkActionView.as_view(), name="dead-letter-bulk"),
    path("failed/<int:pk>/", failures.DeadLetterDetailView.as_view(), name="dead-letter"),
    path("failed/<int:pk>/requeue/", failures.DeadLetterRequeueView.as_view(), name="dead-letter-requeue"),
    path("failed/<int:pk>/discard/", failures.DeadLetterDiscardView.as_view(), name="dead-letter-discard"),
    path("scheduler/", scheduler.SchedulerView.as_view(), name="scheduler"),
    path("scheduler/jobs/<slug:job_id>/", scheduler.SchedulerRequestView.as_view(), name="scheduler-request"),
    path("audit/", failures.AuditTrailView.as_view(), name="audit"),
    path("jobs/", failures.BulkJobListView.as_view(), name="jobs"),
    path("jobs/<int:pk>/", failures.BulkJobDetailView.as_view(), name="job-detail"),
    path("jobs/<int:pk>/cancel/", failures.BulkJobCancelView.as_view(), name="job-cancel"),
    path("devices/<int:pk>/status/", records.DeviceStatusView.as_view(), name="device-status"),
    path("devices/<int:pk>/keys/issue/", records.DeviceKeyIssueView.as_view(), name="device-key-issue"),
    path("devices/<int:pk>/keys/revoke/", records.DeviceKeyRevokeView.as_view(), name="device-key-revoke"),
    path("alerts/", alerts.AlertListView.as_view(), name="alerts"),
    path("alerts/stream/", alerts.AlertStreamView.as_view(), name="alert-stream"),
    path("alerts/<int:pk>/", alerts.AlertDetailView.as_view(), name="alert"),
    path("alerts/<int:pk>/acknowledge/", alerts.AlertAcknowledgeView.as_view(), name="alert-acknowledge"),
    path("alerts/<int:pk>/resolve/", alerts.AlertResolveView.as_view(), name="alert-resolve"),
    path("records/alerts/", alerts.AlertRecordRedirectView.as_view()),
    path("records/alerts/<int:pk>/", alerts.AlertRecordRedirectView.as_view()),
    # Until the resident, device and event pages of their own exist: the generic record pages.
    path("residents/<int:pk>/", records.RecordDetailView.as_view(), {"slug": "residents"}, name="resident"),
    path("devices/<int:pk>/", records.RecordDetailView.as_view(), {"slug": "devices"}, name="device"),
    path("events/<int:pk>/", records.RecordDetailView.as_view(), {"slug": "events"}, name="event"),
    path("records/<slug:slug>/", records.RecordListView.as_view(), name="records"),
    path("records/<slug:slug>/<int:pk>/", records.RecordDetailView.as_view(), name="record"),
]
