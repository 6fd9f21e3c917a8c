"""Make the local demo environment and print how to use it."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.urls import reverse

from ingest.services.demo import demo_environment_ensure


class Command(BaseCommand):
    help = "Create (or reuse) a staff user and a demo device with an API key; print them."

    def add_arguments(self, parser):
        parser.add_argument(
            "--secrets-dir",
            type=Path,
            default=Path(settings.BASE_DIR) / ".demo",
            help="where the demo's plain password and device key are kept (git-ignored)",
        )

    def handle(self, *args, secrets_dir: Path, **options):
        demo = demo_environment_ensure(secrets_dir=secrets_dir)
        self.stdout.write(
            f"Console:     {reverse('dashboard:overview')}  user {demo.staff_username}  "
            f"password {demo.staff_password}\n"
            f"Demo device: {demo.device_serial_no}  key (also in {secrets_dir}/device-key):\n"
            f"{demo.device_key}"
        )
