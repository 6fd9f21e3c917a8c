"""The suite's own cleanup survives a reader that deadlocks its TRUNCATE."""

from __future__ import annotations

import re
import threading
import time

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.core.management.color import no_style
from django.db import connection
from django.test import TransactionTestCase

from ingest.models import Device
from tests.conftest import customer_tables_empty
from tests.factories import DeviceFactory, UserFactory

pytestmark = pytest.mark.usefixtures("transactional_db")


def _truncated_while_a_reader_deadlocks_it(cleanup, *, first: str, later: str) -> list[BaseException]:
    """What a live server's alert stream did to a browser test's cleanup: a reader holds
    ``later``, which the TRUNCATE needs after ``first``, then asks for ``first``, which the
    TRUNCATE already took. PostgreSQL fails the TRUNCATE (the first to wait); the cleanup
    must run it again. Returns what the reader itself failed with (nothing, expected)."""
    reader = psycopg.connect(**{**connection.get_connection_params(), "autocommit": False})
    holding = threading.Event()
    failures: list[BaseException] = []

    def read_later_then_first() -> None:
        try:
            reader.execute(f'SELECT count(*) FROM "{later}"')  # AccessShare, kept
            holding.set()
            time.sleep(0.5)  # the TRUNCATE has taken ``first`` by now and waits for ``later``
            reader.execute(f'SELECT count(*) FROM "{first}"')
            reader.commit()
        except BaseException as error:  # noqa: BLE001 - reported to the test
            failures.append(error)
            reader.rollback()

    thread = threading.Thread(target=read_later_then_first)
    thread.start()
    assert holding.wait(10)
    try:
        cleanup()
    finally:
        thread.join(30)
        reader.close()
    return failures


def test_the_customer_tables_are_emptied_even_when_a_reader_deadlocks_the_truncate():
    DeviceFactory()

    failures = _truncated_while_a_reader_deadlocks_it(
        customer_tables_empty, first="residents", later="devices"
    )

    assert not Device.objects.exists()
    assert failures == []  # the reader was not the one PostgreSQL failed: the TRUNCATE was


def test_djangos_flush_after_a_transactional_test_survives_a_reader_that_deadlocks_it():
    UserFactory()
    # The managed tables in the order Django's flush truncates (and so locks) them.
    flushed = re.findall(r'"([^"]+)"', "".join(connection.ops.sql_flush(no_style(), _flushed_tables())))
    test_case = TransactionTestCase()  # what pytest-django tears a transactional test down with
    test_case.databases = {"default"}

    failures = _truncated_while_a_reader_deadlocks_it(
        test_case._fixture_teardown, first=flushed[0], later=flushed[-1]
    )

    assert not get_user_model().objects.exists()
    assert failures == []


def _flushed_tables() -> list[str]:
    return connection.introspection.django_table_names(only_existing=True, include_views=False)
