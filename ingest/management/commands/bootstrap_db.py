"""Create the customer's tables on an empty database, then verify the models match them."""

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from ingest.services.customer_schema import (
    PartialCustomerSchemaError,
    customer_schema_apply,
    customer_schema_drift,
)


class Command(BaseCommand):
    help = (
        "Apply db/schema.sql if none of the customer's tables exist (never alters or drops), "
        "then check the unmanaged models against the live columns; exit 1 on drift."
    )

    def add_arguments(self, parser):
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args, database: str, **options):
        connection = connections[database]
        try:
            applied = customer_schema_apply(connection=connection)
        except PartialCustomerSchemaError as error:
            raise CommandError(str(error)) from error
        if applied:
            self.stdout.write("Applied db/schema.sql: customer tables created.")
        else:
            self.stdout.write("Customer tables already present: nothing changed.")

        drift = customer_schema_drift(connection=connection)
        if drift:
            lines = "\n".join(f"  - {item}" for item in drift)
            raise CommandError(
                "The customer's schema differs from the unmanaged models:\n"
                f"{lines}\n"
                "Update ingest/models/customer.py (and db/schema.sql from the data team) "
                "before starting the application."
            )
        self.stdout.write(self.style.SUCCESS("Schema check passed: models match the database."))
