"""Which database a query goes to: the router's decisions as pure logic (no database)."""

from __future__ import annotations

import time

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from config.replica import (
    PIN_COOKIE,
    REPLICA_ALIAS,
    ReplicaRouter,
    ReplicaStatus,
    _console_read,
    is_console_read,
    is_pinned_to_primary,
    read_database,
)
from dashboard.models import BulkJob
from ingest.models import SensorReading


@pytest.mark.parametrize("app_label", ["ingest", "dashboard", "scheduler", "django_apscheduler"])
def test_a_console_read_of_replicated_data_goes_to_the_replica(app_label):
    assert read_database(console_read=True, app_label=app_label, in_transaction=False) == REPLICA_ALIAS


@pytest.mark.parametrize("app_label", ["auth", "sessions", "contenttypes", "admin", "axes"])
def test_who_the_user_is_and_may_do_is_always_read_from_the_primary(app_label):
    assert read_database(console_read=True, app_label=app_label, in_transaction=False) == "default"


def test_reads_outside_a_console_read_or_inside_a_transaction_go_to_the_primary():
    assert read_database(console_read=False, app_label="ingest", in_transaction=False) == "default"
    assert read_database(console_read=True, app_label="ingest", in_transaction=True) == "default"


def test_a_write_sends_the_rest_of_the_request_to_the_primary():
    router = ReplicaRouter()
    token = _console_read.set(True)
    try:
        assert router.db_for_read(SensorReading) == REPLICA_ALIAS
        assert router.db_for_write(BulkJob) == "default"
        assert router.db_for_read(SensorReading) == "default"  # it may read back what it wrote
    finally:
        _console_read.reset(token)
    assert router.db_for_read(SensorReading) == "default"  # workers, commands, the API


def test_the_replica_is_never_migrated():
    router = ReplicaRouter()
    assert router.allow_migrate(REPLICA_ALIAS, "ingest") is False
    assert router.allow_migrate("default", "ingest") is True


@pytest.mark.parametrize(
    "method, path, expected",
    [
        ("GET", "/console/", True),
        ("HEAD", "/console/failed/12/", True),
        ("GET", "/console/overview/panel/", True),  # the live-refresh fragment
        ("POST", "/console/failed/12/requeue/", False),
        ("GET", "/console/login/", False),
        ("GET", "/console/logout/", False),
        ("GET", "/admin/ingest/deadletter/", False),
        ("GET", "/readyz", False),
    ],
)
def test_only_the_consoles_reading_pages_are_console_reads(method, path, expected):
    assert is_console_read(RequestFactory().generic(method, path)) is expected


def _request_with_pin():
    response = HttpResponse()
    response.set_signed_cookie(PIN_COOKIE, "1", salt="config.replica.pin")
    request = RequestFactory().get("/console/")
    request.COOKIES[PIN_COOKIE] = response.cookies[PIN_COOKIE].value
    return request


def test_a_recent_pin_sends_the_browser_to_the_primary(settings):
    settings.DATABASE_REPLICA_PIN_SECONDS = 5
    assert is_pinned_to_primary(_request_with_pin())
    assert not is_pinned_to_primary(RequestFactory().get("/console/"))


def test_an_expired_or_forged_pin_does_not(settings):
    settings.DATABASE_REPLICA_PIN_SECONDS = 0.2
    request = _request_with_pin()
    time.sleep(1.1)  # signatures carry whole seconds
    assert not is_pinned_to_primary(request)
    forged = RequestFactory().get("/console/")
    forged.COOKIES[PIN_COOKIE] = "1:forged:signature"
    settings.DATABASE_REPLICA_PIN_SECONDS = 5
    assert not is_pinned_to_primary(forged)


def test_a_replica_status_with_a_problem_is_not_usable():
    assert ReplicaStatus(lag_seconds=0.0, lag_bytes=0).usable
    assert not ReplicaStatus(lag_seconds=120.0, problem="the read replica is 120 s behind").usable
