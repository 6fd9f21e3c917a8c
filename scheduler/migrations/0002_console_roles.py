"""Give the console roles the scheduler's permissions (see dashboard.roles)."""

from django.db import migrations

from dashboard.roles import roles_ensure_in_migration


class Migration(migrations.Migration):
    dependencies = [("scheduler", "0001_initial"), ("dashboard", "0002_console_roles")]

    operations = [migrations.RunPython(roles_ensure_in_migration, migrations.RunPython.noop)]
