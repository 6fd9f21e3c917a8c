"""The OpenAPI document: valid, served offline, and the API holds up to generated requests."""

from __future__ import annotations

import io

import pytest
import schemathesis
from django.core.management import call_command
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error

from config.wsgi import application
from ingest.models import WebhookSource
from ingest.services.devices import device_key_issue
from tests.factories import DeviceFactory


def test_the_schema_is_valid_without_warnings():
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = out.getvalue()
    for operation in ("ingest_create", "ingest_status", "webhook_receive", "healthz", "readyz"):
        assert f"operationId: {operation}" in schema
    assert "DeviceApiKey" in schema


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_the_docs_are_served_without_a_cdn(client, url):
    page = client.get(url).content.decode()
    assert "/static/drf_spectacular_sidecar/" in page
    for cdn in ("cdn.jsdelivr", "unpkg.com", "cdnjs"):
        assert cdn not in page
    assert client.get("/api/schema/").status_code == 200


@pytest.mark.usefixtures("committed_db")
def test_generated_requests_never_cause_a_server_error(ingest_queue):
    """Fuzzed bodies, headers and ids for every operation: refusals are fine, a 5xx is a bug."""
    _, key = device_key_issue(device=DeviceFactory())
    WebhookSource.objects.create(name="carelink", secret="fuzz-secret")
    api_schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    tried = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def call(case):
            headers = {"Authorization": f"Api-Key {key}"} if "ingest" in case.operation.path else {}
            response = case.call(headers=headers)
            case.validate_response(response, checks=[not_a_server_error])

        call()
        tried.append(operation.path)
    assert set(tried) >= {
        "/api/v1/ingest/",
        "/api/v1/ingest/{message_id}/",
        "/api/v1/webhooks/{source}/",
        "/healthz",
    }
