"""Issue an API key for a device; the key is printed once, alone on the last line.

Recorded in the console's audit trail, with the operating-system user as the actor.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from dashboard.services import command_line_actor_name, device_key_issue_audited
from ingest.models import Device, DeviceType
from ingest.services.devices import device_create


class Command(BaseCommand):
    help = "Issue a new API key for a device (stored hashed; shown only now)."

    def add_arguments(self, parser):
        parser.add_argument("serial_no")
        parser.add_argument("--create", action="store_true", help="insert the device first")
        parser.add_argument("--type", dest="device_type", choices=DeviceType.values)
        parser.add_argument("--name", default="", help="a label for the key")

    @transaction.atomic
    def handle(self, *args, serial_no, create, device_type, name, **options):
        if create:
            if Device.objects.filter(serial_no=serial_no).exists():
                raise CommandError(f"device {serial_no} already exists; drop --create")
            if not device_type:
                raise CommandError("--create needs --type")
            device = device_create(serial_no=serial_no, device_type=device_type)
            self.stderr.write(f"Created device {serial_no} ({device_type}).")
        else:
            try:
                device = Device.objects.get(serial_no=serial_no)
            except Device.DoesNotExist:
                raise CommandError(
                    f"no device with serial number {serial_no}; use --create --type TYPE"
                ) from None
        key = device_key_issue_audited(
            device=device, name=name, actor=None, actor_name=command_line_actor_name()
        )
        self.stderr.write(f"Key for {serial_no} (shown once; store it on the device):")
        self.stdout.write(key)
