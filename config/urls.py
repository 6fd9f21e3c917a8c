"""Top-level URL map: device API, health probes, console."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("api/v1/", include("ingest.urls")),
    path("admin/", admin.site.urls),
]
