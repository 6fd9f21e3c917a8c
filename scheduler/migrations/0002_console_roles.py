"""Give the console roles the scheduler's permissions (see dashboard.roles)."""

from django.db import migrations

from dashboard.roles import roles_ensure


def ensure_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    roles_ensure(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


class Migration(migrations.Migration):
    dependencies = [("scheduler", "0001_initial"), ("dashboard", "0002_console_roles")]

    operations = [migrations.RunPython(ensure_roles, migrations.RunPython.noop)]
