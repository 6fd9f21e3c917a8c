from django.urls import path

from ingest.apis import IngestCreateApi, IngestStatusApi, WebhookReceiveApi

app_name = "ingest"

urlpatterns = [
    path("ingest/", IngestCreateApi.as_view(), name="ingest-create"),
    path("ingest/<uuid:message_id>/", IngestStatusApi.as_view(), name="ingest-status"),
    path("webhooks/<slug:source>/", WebhookReceiveApi.as_view(), name="webhook-receive"),
]
