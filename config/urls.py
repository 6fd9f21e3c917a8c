"""Top-level URL map: device API, health probes, the console and Django's admin."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from ingest.apis import HealthApi, ReadinessApi
from ingest.metrics import metrics_view

urlpatterns = [
    path("api/v1/", include("ingest.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script from this origin: no inline script under the CSP.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("healthz", HealthApi.as_view(), name="healthz"),
    path("readyz", ReadinessApi.as_view(), name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("console/", include("dashboard.urls")),
    path("admin/", admin.site.urls),
    # Asked by RabbitMQ's HTTP auth backend for MQTT devices; never exposed by Caddy.
    path("internal/broker-auth/", include("ingest.mqtt.urls")),
]

# Errors outside the API's own JSON answers: the console's styled pages with the request id.
handler400 = "dashboard.views.errors.bad_request"
handler403 = "dashboard.views.errors.permission_denied"
handler404 = "dashboard.views.errors.page_not_found"
handler500 = "dashboard.views.errors.server_error"
