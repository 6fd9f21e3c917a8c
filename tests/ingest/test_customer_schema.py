"""bootstrap_db and the unmanaged models against real PostgreSQL databases."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection, connections

from ingest.services.customer_schema import (
    CUSTOMER_TABLES,
    PartialCustomerSchemaError,
    customer_schema_apply,
    customer_schema_drift,
)
from tests.workers import maintenance_connection

SHARED_SCHEMA = Path(settings.BASE_DIR).parent / "shared" / "schema.sql"


@pytest.mark.skipif(not SHARED_SCHEMA.exists(), reason="the customer's shared/ folder is absent")
def test_schema_sql_is_a_byte_identical_copy_of_the_customers():
    local = Path(settings.BASE_DIR, "db", "schema.sql").read_bytes()
    assert local == SHARED_SCHEMA.read_bytes()


@pytest.mark.django_db
def test_test_database_has_the_customer_tables_and_models_match():
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s), to_regtype('alert_status')", ["sensor_readings"])
        assert cursor.fetchone() == ("sensor_readings", "alert_status")
    assert customer_schema_drift(connection=connection) == []


@pytest.mark.django_db
def test_bootstrap_db_on_existing_tables_changes_nothing_and_passes(capsys):
    call_command("bootstrap_db")
    out = capsys.readouterr().out
    assert "already present: nothing changed" in out
    assert "Schema check passed" in out


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("alteration", "expected"),
    [
        (
            "ALTER TABLE sensor_readings ALTER COLUMN unit TYPE varchar(32)",
            "sensor_readings.unit: type is character varying(32), model expects character varying(16)",
        ),
        (
            "ALTER TABLE residents ALTER COLUMN phone SET NOT NULL",
            "residents.phone: nullable is False, model expects True",
        ),
        (
            "ALTER TABLE devices DROP COLUMN firmware_version",
            "devices.firmware_version: column missing in the database",
        ),
        (
            "ALTER TABLE alerts ADD COLUMN escalated boolean",
            "alerts.escalated: column not mapped by the model",
        ),
    ],
)
def test_bootstrap_db_reports_drift_naming_the_column(alteration, expected):
    # DDL is transactional in PostgreSQL: the test's rollback restores the column.
    with connection.cursor() as cursor:
        cursor.execute(alteration)
    with pytest.raises(CommandError) as excinfo:
        call_command("bootstrap_db")
    assert expected in str(excinfo.value)


@pytest.fixture
def scratch_database(django_db_blocker):
    """An empty database of its own, reachable as the Django alias ``scratch``."""
    name = f"test_scratch_{uuid.uuid4().hex[:10]}"
    with django_db_blocker.unblock():
        with maintenance_connection() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        connections.settings["scratch"] = {**connections.settings["default"], "NAME": name}
        try:
            yield connections["scratch"]
        finally:
            connections["scratch"].close()
            del connections["scratch"]
            del connections.settings["scratch"]
            with maintenance_connection() as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _catalog_snapshot(db) -> list[tuple]:
    with db.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   pg_get_expr(d.adbin, d.adrelid)
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
            ORDER BY 1, 2
            """
        )
        return cursor.fetchall()


def test_bootstrap_db_creates_the_schema_once_and_then_changes_nothing(scratch_database, capsys):
    call_command("bootstrap_db", database="scratch")
    assert "Applied db/schema.sql" in capsys.readouterr().out
    with scratch_database.cursor() as cursor:
        cursor.execute("INSERT INTO residents (full_name) VALUES ('Ada Existing')")
    before = _catalog_snapshot(scratch_database)

    call_command("bootstrap_db", database="scratch")

    assert "nothing changed" in capsys.readouterr().out
    assert _catalog_snapshot(scratch_database) == before
    with scratch_database.cursor() as cursor:
        cursor.execute("SELECT full_name FROM residents")
        assert cursor.fetchall() == [("Ada Existing",)]
        cursor.execute("SELECT count(*) FROM pg_class WHERE relname = ANY(%s)", [list(CUSTOMER_TABLES)])
        assert cursor.fetchone() == (len(CUSTOMER_TABLES),)


def test_bootstrap_db_refuses_a_partial_customer_schema(scratch_database):
    with scratch_database.cursor() as cursor:
        cursor.execute("CREATE TABLE residents (id bigint PRIMARY KEY)")
    with pytest.raises(PartialCustomerSchemaError, match="refusing to apply"):
        customer_schema_apply(connection=scratch_database)
    with pytest.raises(CommandError, match="devices"):
        call_command("bootstrap_db", database="scratch")
