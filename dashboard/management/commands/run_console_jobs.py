"""Carry out the console's bulk jobs (requeue or discard many dead letters), off the web tier."""

import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from dashboard.services.bulk_jobs import bulk_jobs_run_pending

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run queued bulk jobs at a bounded rate until SIGTERM/SIGINT (or once, with --once)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="run what is queued, then exit")
        parser.add_argument("--poll", type=float, default=1.0, help="seconds between looks for new jobs")

    def handle(self, *args, once, poll, **options):
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        logger.info("console job runner started (looking for queued jobs every %.1fs)", poll)
        while True:
            close_old_connections()
            bulk_jobs_run_pending(
                chunk_size=settings.CONSOLE_BULK_CHUNK_SIZE,
                max_per_second=settings.CONSOLE_BULK_MAX_PER_SECOND,
                should_stop=lambda: stopping,
            )
            if once or stopping:
                return
            time.sleep(poll)
