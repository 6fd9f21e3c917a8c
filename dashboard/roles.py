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
VIEWERS = "Console viewers"
OPERATORS = "Console operators"
ROLES = {VIEWERS: VIEWER_PERMISSIONS, OPERATORS: OPERATOR_PERMISSIONS}


def roles_ensure(group_model, permission_model) -> None:
    """Create the role groups and give them their permissions (idempotent)."""
    for name, permissions in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=name)
        for app_label, codename in permissions:
            group.permissions.add(
                permission_model.objects.get(content_type__app_label=app_label, codename=codename)
            )
