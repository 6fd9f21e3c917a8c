"""Fixtures shared by the whole suite: the customer's schema in the test database, and
a broker topology of this run's own (never the default queue names)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from django.apps import apps
from django.core.management.base import CommandError
from django.db import OperationalError, connections
from django.db.models.signals import pre_migrate
from django.test import TransactionTestCase
from django.test.utils import setup_databases, teardown_databases
from psycopg.errors import DeadlockDetected

from ingest.broker.connection import open_connection
from ingest.broker.publisher import publisher_reset
from ingest.broker.topology import Topology, topology_declare, topology_delete
from ingest.services.customer_schema import CUSTOMER_TABLES, customer_schema_apply


def _apply_customer_schema(sender, using, **kwargs):
    customer_schema_apply(connection=connections[using])


@pytest.fixture(scope="session")
def django_db_setup(request, django_test_environment, django_db_blocker, django_db_keepdb):
    """pytest-django's database setup, with ``db/schema.sql`` applied before ``migrate``.

    The app's own tables reference the customer's (``devices``), so the customer's DDL
    must exist first, exactly as ``bootstrap_db`` then ``migrate`` do in production.
    """
    pre_migrate.connect(
        _apply_customer_schema, sender=apps.get_app_config("ingest"), dispatch_uid="test-schema"
    )
    try:
        with django_db_blocker.unblock():
            databases = setup_databases(
                verbosity=request.config.option.verbose,
                interactive=False,
                keepdb=django_db_keepdb,
            )
    finally:
        pre_migrate.disconnect(dispatch_uid="test-schema")
    yield
    if not django_db_keepdb:
        with django_db_blocker.unblock():
            teardown_databases(databases, verbosity=request.config.option.verbose)


@pytest.fixture(scope="session")
def broker_topology():
    """This run's exchange and queues, declared once and deleted at the end."""
    topology = Topology.from_settings()
    assert topology.queue.startswith("test-"), "tests must never use the default queue names"
    connection = open_connection()
    topology_declare(channel=connection.channel(), topology=topology)
    connection.close()
    yield topology
    publisher_reset()
    connection = open_connection()
    topology_delete(channel=connection.channel(), topology=topology)
    connection.close()


@pytest.fixture
def ingest_queue(broker_topology):
    """An empty main queue before and after the test."""
    connection = open_connection()
    channel = connection.channel()
    for queue in broker_topology.queue_names:
        channel.queue_purge(queue)
    yield broker_topology
    for queue in broker_topology.queue_names:
        channel.queue_purge(queue)
    connection.close()


@pytest.fixture
def committed_db(transactional_db):
    """Real commits (as the worker makes them), with the customer's tables emptied after.

    Django's flush only truncates managed tables; the customer's are unmanaged.
    """
    yield
    customer_tables_empty()


DEADLOCK_ATTEMPTS = 5


def _caused_by_deadlock(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, DeadlockDetected):
            return True
        error = error.__cause__ or error.__context__
    return False


def retried_after_deadlock(cleanup: Callable[[], None]) -> None:
    """Run a test's cleanup, again if PostgreSQL failed it to break a deadlock.

    A test's live server may still be reading when the test ends (a browser's alert stream
    polls until its page is gone): its query takes its tables' locks one by one while a
    TRUNCATE takes them in its own order, and PostgreSQL fails one of the two.
    """
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            cleanup()
            return
        except (OperationalError, CommandError) as error:
            if not _caused_by_deadlock(error) or attempt == DEADLOCK_ATTEMPTS:
                raise
            time.sleep(0.1 * attempt)


def customer_tables_empty() -> None:
    """TRUNCATE the customer's tables (Django's flush only empties the managed ones)."""

    def truncate() -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(CUSTOMER_TABLES)} RESTART IDENTITY CASCADE")

    retried_after_deadlock(truncate)


def django_flush_retried_after_deadlock(original: Callable) -> Callable:
    def fixture_teardown(test_case: TransactionTestCase) -> None:
        retried_after_deadlock(lambda: original(test_case))

    return fixture_teardown


@pytest.fixture(scope="session", autouse=True)
def django_flush_survives_a_deadlock():
    """Django's own flush after a transactional test (the managed tables) is retried the same way."""
    original = TransactionTestCase._fixture_teardown
    TransactionTestCase._fixture_teardown = django_flush_retried_after_deadlock(original)
    yield
    TransactionTestCase._fixture_teardown = original
