"""The suite's own cleanup: emptying the customer's tables survives a reader that deadlocks it."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.db import connection

from ingest.models import Device
from tests.conftest import customer_tables_empty
from tests.factories import DeviceFactory

pytestmark = pytest.mark.usefixtures("transactional_db")


def test_the_customer_tables_are_emptied_even_when_a_reader_deadlocks_the_truncate():
    """What a live server's alert stream did to a browser test's cleanup: a reader holds one
    table the TRUNCATE needs, then asks for one the TRUNCATE already took. PostgreSQL fails
    the TRUNCATE (the first to wait), and the cleanup runs it again."""
    DeviceFactory()
    reader = psycopg.connect(**{**connection.get_connection_params(), "autocommit": False})
    holding = threading.Event()
    failures: list[BaseException] = []

    def read_devices_then_residents() -> None:
        try:
            reader.execute("SELECT count(*) FROM devices")  # AccessShare on devices, kept
            holding.set()
            time.sleep(0.5)  # the TRUNCATE has taken residents by now and waits for devices
            reader.execute("SELECT count(*) FROM residents")
            reader.commit()
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            failures.append(error)
            reader.rollback()

    thread = threading.Thread(target=read_devices_then_residents)
    thread.start()
    assert holding.wait(10)
    try:
        customer_tables_empty()
    finally:
        thread.join(30)
        reader.close()

    assert not Device.objects.exists()
    # The reader was not the one PostgreSQL failed: the TRUNCATE was, and ran again.
    assert failures == []
