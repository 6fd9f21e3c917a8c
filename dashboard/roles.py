"""The console's two roles, as groups of permissions: viewers read, operators also act.

Used by the data migration (with historical models) and wherever the groups must be
ensured again (tests that flush tables).
"""

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
    ("scheduler", "view_collectionsource"),
    ("scheduler", "view_collectionrun"),
]
OPERATOR_PERMISSIONS = VIEWER_PERMISSIONS + [
    ("ingest", "requeue_deadletter"),
    ("ingest", "discard_deadletter"),
    ("ingest", "acknowledge_alert"),
    ("ingest", "change_device"),
    ("ingest", "manage_device_keys"),
    ("dashboard", "add_bulkjob"),
    ("dashboard", "change_bulkjob"),
    ("scheduler", "add_schedulerrequest"),
]
VIEWERS = "Console viewers"
OPERATORS = "Console operators"
ROLES = {VIEWERS: VIEWER_PERMISSIONS, OPERATORS: OPERATOR_PERMISSIONS}


def roles_ensure(group_model, permission_model) -> None:
    """Create the role groups and give them their permissions (idempotent)."""
    for name, permissions in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=name)
        for app_label, codename in permissions:
            # An app migrated later adds its own permissions when its migration calls this again.
            permission = permission_model.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if permission is not None:
                group.permissions.add(permission)


def roles_ensure_in_migration(apps, schema_editor) -> None:
    """RunPython step: permissions are normally created after all migrations; the roles need them now."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    roles_ensure(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))
