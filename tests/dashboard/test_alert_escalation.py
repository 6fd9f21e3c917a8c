"""Escalating overdue alerts to a real HTTP receiver that verifies the signature."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from dashboard.models import AlertEscalation, AuditEntry
from dashboard.services.alert_escalation import alert_escalations_run
from dashboard.services.alerts import alert_acknowledge
from ingest.models import Alert
from tests.factories import AlertFactory, UserFactory
from tests.webhooks import TEST_SECRET, OnCallReceiver


@pytest.fixture
def hook_settings(settings):
    settings.ALERT_ESCALATE_MINUTES = 10
    settings.ALERT_ESCALATION_WEBHOOK_SECRET = TEST_SECRET
    settings.ALERT_ESCALATION_TIMEOUT_SECONDS = 2
    return settings


def _overdue_alert(minutes: int = 11) -> Alert:
    alert = AlertFactory(alert_type="sos", message="Critical event sos from device W-1")
    Alert.objects.filter(pk=alert.pk).update(created_at=timezone.now() - timedelta(minutes=minutes))
    return alert


@pytest.mark.django_db
def test_an_overdue_alert_is_escalated_once_with_a_verifiable_signature(hook_settings):
    overdue = _overdue_alert()
    _overdue_alert(minutes=3)  # not yet overdue
    with OnCallReceiver([200]).running() as receiver:
        hook_settings.ALERT_ESCALATION_WEBHOOK_URL = receiver.url
        first = alert_escalations_run(now=timezone.now())
        again = alert_escalations_run(now=timezone.now() + timedelta(minutes=2))

    assert first.sent == [overdue.pk] and again.sent == []
    [delivery] = receiver.deliveries
    assert delivery["verified"]
    assert delivery["headers"]["webhook-id"] == f"alert-{overdue.pk}"
    assert delivery["payload"]["alert"]["id"] == overdue.pk
    assert delivery["payload"]["alert"]["resident"] == overdue.resident.full_name
    escalation = AlertEscalation.objects.get(pk=overdue.pk)
    assert escalation.status == "sent" and escalation.sent_at is not None
    # the hook's query (a token) is never shown or stored
    assert escalation.target.endswith("/hooks/on-call") and "s3cret" not in escalation.target
    assert AuditEntry.objects.get(action="escalated alert").target == f"alert {overdue.pk}"


@pytest.mark.django_db
def test_a_hook_answering_500_is_retried_by_a_later_run_and_every_attempt_is_recorded(hook_settings):
    alert = _overdue_alert()
    with OnCallReceiver([500, 200]).running() as receiver:
        hook_settings.ALERT_ESCALATION_WEBHOOK_URL = receiver.url
        now = timezone.now()
        first = alert_escalations_run(now=now)
        too_soon = alert_escalations_run(now=now + timedelta(seconds=5))
        later = alert_escalations_run(now=now + timedelta(seconds=31))

    assert (first.failed, too_soon.sent + too_soon.failed, later.sent) == ([alert.pk], [], [alert.pk])
    assert [d["headers"]["webhook-id"] for d in receiver.deliveries] == [f"alert-{alert.pk}"] * 2
    escalation = AlertEscalation.objects.get(pk=alert.pk)
    assert (escalation.status, escalation.attempts) == ("sent", 2)
    attempts = list(escalation.attempt_log.values_list("succeeded", "http_status"))
    assert attempts == [(False, 500), (True, 200)]


@pytest.mark.django_db
def test_a_redirecting_hook_is_a_failed_attempt_never_a_delivery(hook_settings):
    # Followed, the POST would become a bodiless GET elsewhere, "succeed", and mark the alert
    # escalated while the on-call system never got it.
    alert = _overdue_alert()
    with OnCallReceiver([302]).running() as receiver:
        hook_settings.ALERT_ESCALATION_WEBHOOK_URL = receiver.url
        run = alert_escalations_run(now=timezone.now())

    assert run.failed == [alert.pk] and run.sent == []
    assert receiver.redirected_gets == []
    escalation = AlertEscalation.objects.get(pk=alert.pk)
    assert escalation.status == "retrying"
    [attempt] = escalation.attempt_log.all()
    assert (attempt.succeeded, attempt.http_status) == (False, 302)


@pytest.mark.django_db
def test_a_reply_that_is_not_http_is_a_recorded_failed_attempt(hook_settings):
    alert = _overdue_alert()
    with OnCallReceiver(["garbage"]).running() as receiver:
        hook_settings.ALERT_ESCALATION_WEBHOOK_URL = receiver.url
        run = alert_escalations_run(now=timezone.now())

    assert run.failed == [alert.pk]
    escalation = AlertEscalation.objects.get(pk=alert.pk)
    assert (escalation.status, escalation.attempts) == ("retrying", 1)
    assert escalation.attempt_log.get().succeeded is False


@pytest.mark.django_db
def test_a_secret_that_is_no_webhook_secret_is_a_recorded_failed_attempt(hook_settings):
    alert = _overdue_alert()
    hook_settings.ALERT_ESCALATION_WEBHOOK_SECRET = "just-a-password"
    with OnCallReceiver([200]).running() as receiver:
        hook_settings.ALERT_ESCALATION_WEBHOOK_URL = receiver.url
        run = alert_escalations_run(now=timezone.now())

    assert run.failed == [alert.pk] and receiver.deliveries == []
    escalation = AlertEscalation.objects.get(pk=alert.pk)
    assert escalation.status == "retrying" and "whsec_" in escalation.last_error


@pytest.mark.django_db
def test_an_unreachable_hook_is_recorded_as_failed_and_tried_again_later(hook_settings):
    alert = _overdue_alert()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once the socket is closed
    hook_settings.ALERT_ESCALATION_WEBHOOK_URL = f"http://127.0.0.1:{port}/hook"
    now = timezone.now()
    run = alert_escalations_run(now=now)

    assert run.failed == [alert.pk]
    escalation = AlertEscalation.objects.get(pk=alert.pk)
    assert escalation.status == "retrying"
    assert "refused" in escalation.last_error.lower()
    assert escalation.next_attempt_at == now + timedelta(seconds=30)
    [attempt] = escalation.attempt_log.all()
    assert not attempt.succeeded and attempt.http_status is None

    # the next failure waits twice as long
    alert_escalations_run(now=now + timedelta(seconds=30))
    escalation.refresh_from_db()
    assert escalation.attempts == 2
    assert escalation.next_attempt_at == now + timedelta(seconds=30) + timedelta(seconds=60)


@pytest.mark.django_db
def test_an_alert_acknowledged_before_delivery_succeeds_is_not_escalated(hook_settings):
    alert = _overdue_alert()
    with OnCallReceiver([503, 200]).running() as receiver:
        hook_settings.ALERT_ESCALATION_WEBHOOK_URL = receiver.url
        now = timezone.now()
        alert_escalations_run(now=now)
        alert_acknowledge(alert_id=alert.pk, actor=UserFactory(), note="on my way")
        alert_escalations_run(now=now + timedelta(minutes=5))

    assert len(receiver.deliveries) == 1
    assert AlertEscalation.objects.get(pk=alert.pk).status == "cancelled"


@pytest.mark.django_db
def test_without_a_hook_nothing_is_escalated(hook_settings):
    _overdue_alert()
    hook_settings.ALERT_ESCALATION_WEBHOOK_URL = ""
    assert alert_escalations_run(now=timezone.now()).enrolled == 0
    assert not AlertEscalation.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_runs_racing_escalate_each_alert_exactly_once(hook_settings):
    alerts = [_overdue_alert() for _ in range(6)]
    with OnCallReceiver([]).running() as receiver:
        hook_settings.ALERT_ESCALATION_WEBHOOK_URL = receiver.url
        now = timezone.now()
        runs, barrier = [], threading.Barrier(2)

        def run():
            barrier.wait()
            try:
                runs.append(alert_escalations_run(now=now))
            finally:
                connections.close_all()

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    sent = sorted(alert_id for result in runs for alert_id in result.sent)
    assert sent == sorted(alert.pk for alert in alerts)
    delivered = sorted(d["payload"]["alert"]["id"] for d in receiver.deliveries)
    assert delivered == sent
    assert AlertEscalation.objects.filter(status="sent").count() == 6


def test_the_scheduler_runs_escalation_as_a_job_with_a_stable_id_and_says_what_a_pause_stops():
    from scheduler.jobs import escalate_alerts, job_specs

    [spec] = [spec for spec in job_specs() if spec.id == "escalate_alerts"]
    assert spec.func is escalate_alerts
    assert "not be escalated" in spec.when_paused
