"""The console's two roles as groups: viewers read, operators also act."""

from django.db import migrations

from dashboard.roles import ROLES, roles_ensure_in_migration


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0001_initial"),
        ("ingest", "0002_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(roles_ensure_in_migration, remove_roles)]
