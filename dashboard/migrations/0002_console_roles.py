"""The console's two roles as groups: viewers read, operators also act."""

from django.db import migrations

VIEWER_PERMISSIONS = [
    ("ingest", "view_deadletter"),
    ("ingest", "view_deadletteraction"),
    ("ingest", "view_ingestmessage"),
    ("ingest", "view_resident"),
    ("ingest", "view_device"),
    ("ingest", "view_sensorreading"),
    ("ingest", "view_deviceevent"),
    ("ingest", "view_webhookevent"),
    ("ingest", "view_alert"),
    ("dashboard", "view_bulkjob"),
]
OPERATOR_PERMISSIONS = VIEWER_PERMISSIONS + [
    ("ingest", "requeue_deadletter"),
    ("ingest", "discard_deadletter"),
    ("ingest", "acknowledge_alert"),
    ("ingest", "change_device"),
    ("ingest", "manage_device_keys"),
    ("dashboard", "add_bulkjob"),
    ("dashboard", "change_bulkjob"),
]
ROLES = {"Console viewers": VIEWER_PERMISSIONS, "Console operators": OPERATOR_PERMISSIONS}


def create_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations; the groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for name, permissions in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=name)
        for app_label, codename in permissions:
            group.permissions.add(
                permission_model.objects.get(content_type__app_label=app_label, codename=codename)
            )


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0001_initial"),
        ("ingest", "0002_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
