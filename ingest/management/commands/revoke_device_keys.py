"""Revoke every API key of a device (a lost or compromised device).

Recorded in the console's audit trail, with the operating-system user as the actor.
"""

from django.core.management.base import BaseCommand, CommandError

from dashboard.services import command_line_actor_name, device_keys_revoke_audited
from ingest.models import Device


class Command(BaseCommand):
    help = "Revoke all API keys of a device; requests with them then get 401."

    def add_arguments(self, parser):
        parser.add_argument("serial_no")

    def handle(self, *args, serial_no, **options):
        try:
            device = Device.objects.get(serial_no=serial_no)
        except Device.DoesNotExist:
            raise CommandError(f"no device with serial number {serial_no}") from None
        revoked = device_keys_revoke_audited(device=device, actor=None, actor_name=command_line_actor_name())
        self.stdout.write(f"Revoked {revoked} key(s) of {serial_no}.")
