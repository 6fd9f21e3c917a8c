"""Top-level URL map: device API, health probes, console."""

from django.contrib import admin
from django.urls import include, path

from ingest.apis import HealthApi, ReadinessApi

urlpatterns = [
    path("api/v1/", include("ingest.urls")),
    path("healthz", HealthApi.as_view(), name="healthz"),
    path("readyz", ReadinessApi.as_view(), name="readyz"),
    path("admin/", admin.site.urls),
]
