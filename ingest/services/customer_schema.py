"""Create the customer's tables from ``db/schema.sql`` and detect drift from the models.

The customer's data team owns the schema. This module never alters or drops anything:
it applies the DDL only to a database that has none of the customer's tables, and
otherwise only compares the live columns with the unmanaged models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from ingest.models.customer import CUSTOMER_MODELS

SCHEMA_SQL_PATH = Path(settings.BASE_DIR) / "db" / "schema.sql"
CUSTOMER_TABLES = tuple(model._meta.db_table for model in CUSTOMER_MODELS)


class PartialCustomerSchemaError(Exception):
    """Some but not all customer tables exist: applying the DDL would fail half-way."""


@dataclass(frozen=True)
class LiveColumn:
    type: str
    nullable: bool


@dataclass(frozen=True)
class ColumnDrift:
    table: str
    column: str
    problem: str

    def __str__(self) -> str:
        return f"{self.table}.{self.column}: {self.problem}"


def customer_tables_present(*, connection: BaseDatabaseWrapper) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = ANY(%s)",
            [list(CUSTOMER_TABLES)],
        )
        return {row[0] for row in cursor.fetchall()}


def customer_schema_apply(*, connection: BaseDatabaseWrapper) -> bool:
    """Apply ``db/schema.sql`` if none of the customer's tables exist.

    Returns True if the DDL was applied, False if the tables were already there.
    """
    present = customer_tables_present(connection=connection)
    if present == set(CUSTOMER_TABLES):
        return False
    if present:
        missing = sorted(set(CUSTOMER_TABLES) - present)
        raise PartialCustomerSchemaError(
            f"customer tables {sorted(present)} exist but {missing} do not; "
            "refusing to apply db/schema.sql over a partial schema"
        )
    ddl = SCHEMA_SQL_PATH.read_text(encoding="utf-8")
    # One transaction: a failure leaves the database as it was, never half-created.
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(ddl)
    return True


def _live_columns(*, connection: BaseDatabaseWrapper) -> dict[tuple[str, str], LiveColumn]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = current_schema() AND c.relname = ANY(%s)
              AND a.attnum > 0 AND NOT a.attisdropped
            """,
            [list(CUSTOMER_TABLES)],
        )
        return {
            (table, column): LiveColumn(type=type_, nullable=nullable)
            for table, column, type_, nullable in cursor.fetchall()
        }


_VARCHAR = re.compile(r"^varchar\((\d+)\)$")


def _canonical_type(db_type: str) -> str:
    """Spell a Django ``db_type`` the way PostgreSQL's ``format_type`` does."""
    match = _VARCHAR.match(db_type)
    if match:
        return f"character varying({match.group(1)})"
    return db_type


def customer_schema_drift(*, connection: BaseDatabaseWrapper) -> list[ColumnDrift]:
    """Every difference between the unmanaged models and the live customer tables."""
    live = _live_columns(connection=connection)
    drift: list[ColumnDrift] = []
    for model in CUSTOMER_MODELS:
        table = model._meta.db_table
        mapped_columns = set()
        for field in model._meta.concrete_fields:
            column = field.column
            mapped_columns.add(column)
            expected_type = _canonical_type(field.db_type(connection))
            actual = live.get((table, column))
            if actual is None:
                drift.append(ColumnDrift(table, column, "column missing in the database"))
                continue
            if actual.type != expected_type:
                drift.append(
                    ColumnDrift(table, column, f"type is {actual.type}, model expects {expected_type}")
                )
            expected_nullable = bool(field.null)
            if actual.nullable != expected_nullable:
                drift.append(
                    ColumnDrift(
                        table,
                        column,
                        f"nullable is {actual.nullable}, model expects {expected_nullable}",
                    )
                )
        for live_table, live_column in sorted(live):
            if live_table == table and live_column not in mapped_columns:
                drift.append(ColumnDrift(table, live_column, "column not mapped by the model"))
    return drift
