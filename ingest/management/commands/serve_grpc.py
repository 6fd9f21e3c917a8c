"""Serve gRPC streaming ingest (``IngestStream``) until SIGTERM/SIGINT."""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from ingest.grpc.server import grpc_server_start


class Command(BaseCommand):
    help = "Serve the IngestStream gRPC service (plain HTTP/2 for the proxy in front; TLS ends there)."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=settings.GRPC_BIND, help="address to listen on")
        parser.add_argument("--port", type=int, default=settings.GRPC_PORT, help="0 picks a free port")
        parser.add_argument(
            "--grace",
            type=float,
            default=settings.GRPC_SHUTDOWN_GRACE_SECONDS,
            help="seconds open streams get to finish after SIGTERM",
        )

    def handle(self, *args, bind, port, grace, **options):
        running = grpc_server_start(bind=bind, port=port)
        stop_requested = threading.Event()

        def stop(signum, frame):
            stop_requested.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"serving gRPC ingest on {bind}:{running.port}")
        self.stdout.flush()
        while not stop_requested.wait(1.0):
            pass
        running.stop(grace)
        self.stdout.write("stopped")
