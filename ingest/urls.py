from django.urls import path

from ingest.apis import IngestCreateApi

app_name = "ingest"

urlpatterns = [
    path("ingest/", IngestCreateApi.as_view(), name="ingest-create"),
]
