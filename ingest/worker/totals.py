"""What a worker has done since it started (printed by ``consume_queue`` when it stops)."""

from __future__ import annotations

from dataclasses import dataclass

from ingest import metrics
from ingest.services.message_store import StoreOutcome


@dataclass
class WorkerTotals:
    batches: int = 0
    messages: int = 0
    readings_inserted: int = 0
    events_inserted: int = 0
    webhook_events_inserted: int = 0
    duplicates_skipped: int = 0
    retried: int = 0
    dead_lettered: int = 0
    dead_letters_recorded: int = 0

    def add(self, outcome: StoreOutcome) -> None:
        metrics.CONSUMED.labels(result="stored").inc(outcome.messages_stored)
        metrics.CONSUMED.labels(result="already_processed").inc(outcome.messages_already_processed)
        metrics.ROWS.labels(table="sensor_readings").inc(outcome.readings_inserted)
        metrics.ROWS.labels(table="device_events").inc(outcome.events_inserted)
        metrics.ROWS.labels(table="webhook_events").inc(outcome.webhook_events_inserted)
        self.messages += outcome.messages_stored + outcome.messages_already_processed
        self.readings_inserted += outcome.readings_inserted
        self.events_inserted += outcome.events_inserted
        self.webhook_events_inserted += outcome.webhook_events_inserted
        self.duplicates_skipped += outcome.messages_already_processed
