"""Run the ingest worker until SIGTERM/SIGINT."""

import signal

from django.conf import settings
from django.core.management.base import BaseCommand
from prometheus_client import start_http_server

from ingest.broker.topology import Topology
from ingest.worker import IngestWorker


class Command(BaseCommand):
    help = "Consume pipeline messages from RabbitMQ and store them in the customer's tables."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=settings.INGEST_BATCH_SIZE)
        parser.add_argument(
            "--batch-max-wait",
            type=float,
            default=settings.INGEST_BATCH_MAX_WAIT_SECONDS,
            help="longest a batch keeps filling while messages keep arriving (stored at once when the broker pauses)",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=settings.WORKER_METRICS_PORT,
            help="serve this worker's Prometheus metrics on this port (0: off)",
        )
        parser.add_argument(
            "--stop-when-idle",
            action="store_true",
            help="exit once the main and dead-letter queues are empty (scripts, benchmarks)",
        )

    def handle(self, *args, batch_size, batch_max_wait, stop_when_idle, metrics_port, **options):
        if metrics_port:
            # A worker on another machine or container cannot share gunicorn's metrics files.
            start_http_server(metrics_port, addr=settings.WORKER_METRICS_ADDRESS)
        worker = IngestWorker(
            topology=Topology.from_settings(),
            batch_size=batch_size,
            batch_max_wait=batch_max_wait,
            max_attempts=settings.INGEST_MAX_ATTEMPTS,
        )

        def stop(signum, frame):
            worker.request_stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        totals = worker.run(stop_when_idle=stop_when_idle)
        self.stdout.write(
            f"stopped: {totals.messages} messages, {totals.readings_inserted} readings, "
            f"{totals.events_inserted} events, {totals.webhook_events_inserted} webhook events, "
            f"{totals.duplicates_skipped} duplicates skipped, {totals.retried} retried, "
            f"{totals.dead_lettered} dead-lettered"
        )
