"""Run the scheduler (its own process, never inside the web tier) until SIGTERM/SIGINT."""

import signal

from django.core.management.base import BaseCommand

from scheduler.runner import SchedulerRunner


class Command(BaseCommand):
    help = "Run periodic jobs (collection, alert rules, housekeeping); one leader among several."

    def handle(self, *args, **options):
        runner = SchedulerRunner()

        def stop(signum, frame):
            runner.request_stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        runner.run()
        self.stdout.write("scheduler stopped")
