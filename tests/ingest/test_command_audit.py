"""Device keys issued or revoked from the command line appear in the console's audit trail."""

from __future__ import annotations

import getpass
import io

import pytest
from django.core.management import call_command
from django.test import Client

from dashboard.models import AuditEntry
from ingest.models import DeviceAPIKey
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _issue(*args) -> str:
    stdout = io.StringIO()
    call_command("create_device_key", *args, stdout=stdout, stderr=io.StringIO())
    return stdout.getvalue().strip().splitlines()[-1]


def test_a_key_issued_from_the_command_line_is_audited_without_the_key():
    key = _issue("GW-A1", "--create", "--type", "gateway")

    entry = AuditEntry.objects.get(action="issued device key", target="GW-A1")
    assert entry.actor is None
    assert entry.actor_name.startswith(f"{getpass.getuser()} (command line on ")
    assert entry.detail == f"prefix {DeviceAPIKey.objects.get(device__serial_no='GW-A1').prefix}"
    assert key not in entry.detail


def test_keys_revoked_from_the_command_line_are_audited(monkeypatch):
    _issue("GW-A2", "--create", "--type", "gateway")
    _issue("GW-A2")
    monkeypatch.setenv("SUDO_USER", "alice")

    call_command("revoke_device_keys", "GW-A2", stdout=io.StringIO())

    entry = AuditEntry.objects.get(action="revoked device keys", target="GW-A2")
    assert entry.detail == "2 key(s)"
    assert entry.actor_name.startswith(f"alice as {getpass.getuser()} (command line")


def test_the_console_audit_page_lists_command_line_actions():
    _issue("GW-A3", "--create", "--type", "gateway")
    call_command("revoke_device_keys", "GW-A3", stdout=io.StringIO())
    console = Client()
    console.force_login(UserFactory())

    page = console.get("/console/audit/").content.decode()

    assert "issued device key" in page and "revoked device keys" in page and "GW-A3" in page
    assert "command line" in page
