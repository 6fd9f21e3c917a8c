"""Import a large CSV or NDJSON file into the pipeline, with progress and a summary."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
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

    def handle(self, *args, path, file_format, device, chunk, **options):
        if not path.is_file():
            raise CommandError(f"no such file: {path}")

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
