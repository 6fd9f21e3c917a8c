"""Console actions: the audit trail and devices (bulk jobs: ``bulk_jobs``; alerts: ``alerts``)."""

from __future__ import annotations

import getpass
import logging
import os
import socket

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from core.errors import ApplicationError
from dashboard.models import AuditEntry, BulkJob
from ingest.models import Device, DeviceStatus
from ingest.services.devices import device_key_issue, device_keys_revoke

logger = logging.getLogger(__name__)


def audit_record(
    *,
    actor: AbstractBaseUser | None,
    action: str,
    target: str,
    detail: str = "",
    actor_name: str = "",
    bulk_job: BulkJob | None = None,
) -> AuditEntry:
    """Record an action; ``actor`` is the console user, or None with ``actor_name`` for a command."""
    return AuditEntry.objects.create(
        actor=actor,
        actor_name=actor_name or actor.get_username(),
        action=action,
        target=target,
        detail=detail,
        bulk_job=bulk_job,
    )


def command_line_actor_name() -> str:
    """Who ran a management command: the operating-system user (and who became it with sudo)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # a container's uid with no passwd entry
        user = f"uid {os.getuid()}"
    if (sudo_user := os.environ.get("SUDO_USER")) and sudo_user != user:
        user = f"{sudo_user} as {user}"
    return f"{user} (command line on {socket.gethostname()})"[:150]


@transaction.atomic
def device_status_change(*, device_id: int, status: str, actor: AbstractBaseUser) -> Device:
    if status not in DeviceStatus.values:
        raise ApplicationError(f"unknown device status {status!r}", code="invalid")
    device = Device.objects.select_for_update().get(pk=device_id)
    previous, device.status = device.status, status
    device.save(update_fields=["status"])
    audit_record(
        actor=actor, action="changed device status", target=device.serial_no, detail=f"{previous} → {status}"
    )
    return device


@transaction.atomic
def device_key_issue_audited(
    *, device: Device, name: str, actor: AbstractBaseUser | None, actor_name: str = ""
) -> str:
    """Issue a key (console or command line); the plain key is returned once and never logged."""
    api_key, key = device_key_issue(device=device, name=name)
    audit_record(
        actor=actor,
        actor_name=actor_name,
        action="issued device key",
        target=device.serial_no,
        detail=f"prefix {api_key.prefix}",
    )
    return key


@transaction.atomic
def device_keys_revoke_audited(
    *, device: Device, actor: AbstractBaseUser | None, actor_name: str = ""
) -> int:
    revoked = device_keys_revoke(device=device)
    audit_record(
        actor=actor,
        actor_name=actor_name,
        action="revoked device keys",
        target=device.serial_no,
        detail=f"{revoked} key(s)",
    )
    return revoked
