"""Import a large CSV or NDJSON file into the pipeline, with progress and a summary."""

from pathlib import Path

import grpc
from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from ingest.grpc.client import StreamRefused, StreamTarget, file_stream_import
from ingest.management.progress import ProgressReport
from ingest.services.file_import import file_import

BAD_LINES_SHOWN = 50


class Command(BaseCommand):
    help = (
        "Stream a file of readings/events into the pipeline in confirmed chunks. CSV header: "
        "[device,]metric,value,unit,measured_at (or event_type,severity,occurred_at,detail); "
        "NDJSON: one reading or event object per line (optional 'device'). Re-running is safe."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument("--format", dest="file_format", choices=["csv", "ndjson"], required=True)
        parser.add_argument("--device", help="serial number for lines that name none")
        parser.add_argument("--chunk", type=int, default=1000, help="records per message")
        parser.add_argument(
            "--to",
            metavar="grpc://HOST:PORT",
            help="stream the file to a remote instance over gRPC (grpcs:// for TLS) instead of "
            "this instance's broker; resumes after disconnects",
        )
        parser.add_argument("--key", help="with --to: the sending device's key")
        parser.add_argument("--ca-file", type=Path, help="with grpcs://: the CA certificate to trust")

    def handle(self, *args, path, file_format, device, chunk, to, key, ca_file, **options):
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        if to:
            self._stream(path=path, file_format=file_format, chunk=chunk, to=to, key=key, ca_file=ca_file)
            return

        # Progress goes to stderr (the summary to stdout): a bar on a terminal, plain lines
        # every few seconds in a log.
        report = ProgressReport(self.stderr._out, unit="lines")
        try:
            summary = file_import(
                path=path,
                file_format=file_format,
                device_serial=device,
                chunk_size=chunk,
                progress=report.update,
            )
        except ApplicationError as error:
            raise CommandError(
                f"stopped: {error.message} (re-run the same file to continue; nothing is duplicated)"
            ) from error
        finally:
            report.finish()
        for line, reason in summary.bad_lines[:BAD_LINES_SHOWN]:
            self.stderr.write(f"line {line}: {reason}")
        if len(summary.bad_lines) > BAD_LINES_SHOWN:
            self.stderr.write(f"... and {len(summary.bad_lines) - BAD_LINES_SHOWN} more bad lines")
        self.stdout.write(
            f"{summary.lines} lines: {summary.records_published} records published in {summary.messages_published} "
            f"messages, {summary.records_already_imported} already imported, {len(summary.bad_lines)} bad lines"
        )

    def _stream(self, *, path, file_format, chunk, to, key, ca_file):
        if not key:
            raise CommandError("--to needs --key (the sending device's key)")
        try:
            StreamTarget.parse(to)
        except ValueError as error:
            raise CommandError(str(error)) from None
        try:
            summary = file_stream_import(
                path=path,
                file_format=file_format,
                target=to,
                key=key,
                chunk_size=chunk,
                root_certificates=ca_file.read_bytes() if ca_file else None,
            )
        except StreamRefused as error:
            raise CommandError(f"refused: {error}") from error
        except grpc.RpcError as error:
            raise CommandError(
                f"stopped: {error.code().name}: {error.details()} "
                "(re-run the same file to continue; nothing is duplicated)"
            ) from error
        for line, reason in summary.bad_lines[:BAD_LINES_SHOWN]:
            self.stderr.write(f"line {line}: {reason}")
        for first, last, reasons in summary.refused_chunks[:BAD_LINES_SHOWN]:
            self.stderr.write(f"lines {first}-{last} refused: {reasons}")
        self.stdout.write(
            f"{summary.records_acknowledged} records in {summary.chunks_acknowledged} chunks acknowledged, "
            f"{len(summary.refused_chunks)} chunks refused, {len(summary.bad_lines)} bad lines, "
            f"{summary.streams_opened} stream(s)"
        )
