"""Every console POST refuses a request without a CSRF token, and changes nothing.

The endpoints are read from the console's URLconf: a new POST view fails this test until
it is given a request here that it would act on.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pika
import pytest
from django.apps import apps
from django.test import Client
from django.urls import URLPattern, get_resolver
from django.utils import timezone
from django_apscheduler.models import DjangoJob

from dashboard.models import BulkJob
from ingest.broker.connection import open_connection
from ingest.models import IngestMessage
from ingest.services.dead_letters import dead_letter_version
from ingest.services.devices import device_key_issue
from tests.broker import queue_depth
from tests.dashboard.bulk import bulk_job_planned, bulk_plan_for
from tests.factories import AlertFactory, DeadLetterFactory, DeviceFactory, UserFactory
from tests.retry_tiers import slow_retry_topology

pytestmark = pytest.mark.django_db

PASSWORD = "console-pw-1"


def console_post_endpoints() -> list[str]:
    """The url names of the console's views that accept POST."""
    resolver = get_resolver()
    [console] = [pattern for pattern in resolver.url_patterns if str(pattern.pattern) == "console/"]
    names = []
    for pattern in console.url_patterns:
        assert isinstance(pattern, URLPattern), "nested console URLconfs: extend this walk"
        view_class = getattr(pattern.callback, "view_class", None)
        handles_post = (
            hasattr(view_class, "post") and "post" in view_class.http_method_names
            if view_class
            else True  # a function view: assume it may take POST, so it must be listed below
        )
        if handles_post:
            names.append(pattern.name)
    return names


def _requests(operator) -> dict[str, tuple[str, dict]]:
    """For each POST endpoint: a URL and form data it would act on (given a valid token)."""
    dead = DeadLetterFactory()
    edited = DeadLetterFactory()
    discarded = DeadLetterFactory()
    DeadLetterFactory.create_batch(2, error_class="django.db.utils.DataError", error_message="too long")
    job = bulk_job_planned(actor=operator, action="discard", reason="r")
    paused = bulk_job_planned(actor=operator, action="requeue")
    BulkJob.objects.filter(pk=paused.pk).update(status=BulkJob.Status.PAUSED)
    plan = bulk_plan_for(actor=operator, action="requeue")
    alert = AlertFactory()
    device = DeviceFactory()
    key_to_revoke, _ = device_key_issue(device=DeviceFactory(), name="one")
    DjangoJob.objects.create(id="raise_alerts", next_run_time=timezone.now(), job_state=b"")
    return {
        "login": ("/console/login/", {"username": operator.username, "password": PASSWORD}),
        "logout": ("/console/logout/", {}),
        "dead-letter-bulk": (
            "/console/failed/bulk/",
            {"action": "discard", "scope": "filter", "error_class": "DataError", "reason": "bad firmware"},
        ),
        "dead-letter-requeue": (f"/console/failed/{dead.pk}/requeue/", {"reason": "fixed"}),
        "dead-letter-requeue (edit)": (
            f"/console/failed/{edited.pk}/requeue/",
            {
                "edit": "1",
                "confirm": "1",
                "version": dead_letter_version(edited),
                "body": edited.body_text,
                "reason": "same records",
            },
        ),
        "dead-letter-discard": (f"/console/failed/{discarded.pk}/discard/", {"reason": "test device"}),
        "scheduler-request": ("/console/scheduler/jobs/raise_alerts/", {"action": "pause"}),
        "job-cancel": (f"/console/jobs/{job.pk}/cancel/", {}),
        "job-resume": (f"/console/jobs/{paused.pk}/resume/", {}),
        "bulk-plan-confirm": (f"/console/failed/bulk/plans/{plan.token}/confirm/", {}),
        "alert-acknowledge": (f"/console/alerts/{alert.pk}/acknowledge/", {"note": "on my way"}),
        "alert-resolve": (f"/console/alerts/{alert.pk}/resolve/", {"note": "resident is fine"}),
        "device-status": (f"/console/devices/{device.pk}/status/", {"status": "inactive"}),
        "device-key-issue": (f"/console/devices/{device.pk}/keys/issue/", {"name": "spare"}),
        "device-key-revoke": (f"/console/devices/{device.pk}/keys/revoke/", {}),
        "device-key-revoke-one": (
            f"/console/devices/{key_to_revoke.device_id}/keys/{key_to_revoke.prefix}/revoke/",
            {},
        ),
    }


@pytest.fixture
def waiting_retry(settings):
    """The id of a message waiting in a (slow) retry tier, on the broker and in the ledger."""
    with slow_retry_topology(settings) as topology:
        message_id = str(uuid.uuid4())
        IngestMessage.objects.create(
            message_id=message_id,
            kind="device_batch",
            received_at=timezone.now(),
            attempts=1,
            last_error="x: y",
            last_failed_at=timezone.now(),
            retry_due_at=timezone.now() + timedelta(seconds=600),
        )
        connection = open_connection()
        connection.channel().basic_publish(
            exchange="",
            routing_key=topology.retry_queues[0],
            body=b"{}",
            properties=pika.BasicProperties(message_id=message_id, delivery_mode=2),
        )
        connection.close()
        yield message_id


def _database_state() -> dict[str, list[dict]]:
    """Every row of the product's tables (and sessions): what a refused request must not touch."""
    labels = {"ingest", "dashboard", "scheduler", "django_apscheduler", "sessions", "auth"}
    return {
        model._meta.label: sorted(model.objects.values(), key=lambda row: str(row.get("id", row)))
        for model in apps.get_models()
        if model._meta.app_label in labels
    }


def test_the_walk_finds_the_console_actions():
    assert {"dead-letter-requeue", "dead-letter-bulk", "scheduler-request", "login"} <= set(
        console_post_endpoints()
    )


@pytest.mark.usefixtures("ingest_queue")
@pytest.mark.parametrize("endpoint", [*console_post_endpoints(), "dead-letter-requeue (edit)"])
def test_a_post_without_a_csrf_token_is_refused_and_changes_nothing(endpoint, broker_topology, request):
    operator = UserFactory(username="olivia", role="Console operators")
    operator.set_password(PASSWORD)
    operator.save()
    requests = _requests(operator)
    if endpoint == "retry-now":  # needs a message really waiting in a retry tier
        requests[endpoint] = (f"/console/retries/{request.getfixturevalue('waiting_retry')}/retry-now/", {})
    assert endpoint in requests, f"the console POST view {endpoint!r} has no CSRF test: add it to _requests"
    url, data = requests[endpoint]
    client = Client(enforce_csrf_checks=True)
    if endpoint != "login":
        client.force_login(operator)
    client.get("/console/login/")  # sets the CSRF cookie, as a browser has it
    token = client.cookies["csrftoken"].value
    before = _database_state()

    refused = client.post(url, data)

    assert refused.status_code == 403
    assert _database_state() == before
    assert queue_depth(broker_topology.queue) == 0

    # The same request with the token acts: the refusal above was the CSRF check, not bad data.
    accepted = client.post(url, {**data, "csrfmiddlewaretoken": token})
    assert accepted.status_code in (200, 302)
    assert _database_state() != before
