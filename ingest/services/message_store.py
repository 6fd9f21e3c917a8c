"""Writing consumed messages into the customer's tables, exactly once.

One call is one transaction for a whole batch of broker messages. Each message id is
marked ``processed`` in the ``IngestMessage`` ledger in that same transaction, so a
message delivered again (after a crash before the ack, or a duplicate publish) inserts
nothing.
Rows go in with set-based ``INSERT ... SELECT FROM unnest(...)`` statements: one
round-trip per table per batch, not one per reading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from ingest.messages import DeviceBatch, PipelineMessage, WebhookMessage
from ingest.models import IngestMessage

CRITICAL_SEVERITY = 3


@dataclass(frozen=True)
class StoreOutcome:
    messages_stored: int
    messages_already_processed: int
    readings_inserted: int
    readings_duplicate: int
    events_inserted: int
    webhook_events_inserted: int


def _ledger_claim(messages: list[PipelineMessage], processed_at) -> set:
    """Mark the messages processed; return the ids that were not processed before.

    Concurrent workers holding the same id serialise on its ledger row: the second one
    sees ``processed`` once the first commits, and skips it.
    """
    ledger_table = IngestMessage._meta.db_table
    processed = IngestMessage.Status.PROCESSED
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {ledger_table} AS ledger (message_id, kind, device_id, status, received_at,
                                                  processed_at, readings, events, attempts, last_error)
            SELECT message_id, kind, device_id, %s, received_at, %s, readings, events, 0, ''
            FROM unnest(%s::uuid[], %s::varchar[], %s::bigint[], %s::timestamptz[], %s::int[], %s::int[])
                AS t(message_id, kind, device_id, received_at, readings, events)
            ON CONFLICT (message_id) DO UPDATE
                SET status = EXCLUDED.status, processed_at = EXCLUDED.processed_at, last_error = ''
                WHERE ledger.status <> EXCLUDED.status
            RETURNING message_id
            """,
            [
                processed,
                processed_at,
                [message.message_id for message in messages],
                [message.kind for message in messages],
                [message.device_id for message in messages],
                [message.accepted_at for message in messages],
                [len(getattr(message, "readings", ())) for message in messages],
                [len(getattr(message, "events", ())) for message in messages],
            ],
        )
        return {row[0] for row in cursor.fetchall()}


def _readings_insert(batches: list[DeviceBatch]) -> int:
    device_ids, metrics, values, units, measured = [], [], [], [], []
    for batch in batches:
        for reading in batch.readings:
            device_ids.append(batch.device_id)
            metrics.append(reading["metric"])
            values.append(float(reading["value"]))
            units.append(reading.get("unit"))
            measured.append(reading["measured_at"])
    if not device_ids:
        return 0
    with connection.cursor() as cursor:
        # A point already stored (same device, metric, instant) is absorbed by the
        # customer's unique constraint instead of failing the batch.
        cursor.execute(
            """
            INSERT INTO sensor_readings (device_id, metric, value, unit, measured_at)
            SELECT * FROM unnest(%s::bigint[], %s::varchar[], %s::float8[], %s::varchar[],
                                 %s::timestamptz[])
            ON CONFLICT ON CONSTRAINT uq_sensor_readings_point DO NOTHING
            """,
            [device_ids, metrics, values, units, measured],
        )
        return cursor.rowcount


def _events_insert(batches: list[DeviceBatch]) -> int:
    device_ids, types, severities, occurred, details = [], [], [], [], []
    for batch in batches:
        for event in batch.events:
            device_ids.append(batch.device_id)
            types.append(event["event_type"])
            severities.append(event.get("severity", 0))
            occurred.append(event["occurred_at"])
            details.append(json.dumps(event.get("detail") or {}))
    if not device_ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH inserted AS (
                INSERT INTO device_events (device_id, event_type, severity, occurred_at, detail)
                SELECT * FROM unnest(%s::bigint[], %s::varchar[], %s::smallint[],
                                     %s::timestamptz[], %s::jsonb[])
                RETURNING device_id, event_type, severity, occurred_at
            ), critical AS (
                -- A critical event (SOS, fall) needs a carer: alert the device's resident.
                INSERT INTO alerts (resident_id, device_id, alert_type, message)
                SELECT d.resident_id, i.device_id, i.event_type,
                       'Critical event ' || i.event_type || ' from device ' || d.serial_no
                       || ' at ' || to_char(i.occurred_at AT TIME ZONE 'UTC',
                                            'YYYY-MM-DD HH24:MI:SS') || ' UTC'
                FROM inserted i JOIN devices d ON d.id = i.device_id
                WHERE i.severity >= %s
            )
            SELECT count(*) FROM inserted
            """,
            [device_ids, types, severities, occurred, details, CRITICAL_SEVERITY],
        )
        return cursor.fetchone()[0]


def _devices_mark_seen(batches: list[DeviceBatch]) -> None:
    """Set each device's ``last_seen_at`` to when its newest message was accepted."""
    latest_by_device: dict[int, object] = {}
    for batch in batches:
        seen = latest_by_device.get(batch.device_id)
        latest_by_device[batch.device_id] = max(seen, batch.accepted_at) if seen else batch.accepted_at
    device_ids = sorted(latest_by_device)
    with connection.cursor() as cursor:
        # Rows are locked in id order so that concurrent workers cannot deadlock.
        cursor.execute(
            """
            UPDATE devices SET last_seen_at = GREATEST(devices.last_seen_at, seen.at)
            FROM (
                SELECT d.id, s.at
                FROM unnest(%s::bigint[], %s::timestamptz[]) AS s(id, at)
                JOIN devices d ON d.id = s.id
                ORDER BY d.id
                FOR UPDATE OF d
            ) AS seen
            WHERE devices.id = seen.id
            """,
            [device_ids, [latest_by_device[device_id] for device_id in device_ids]],
        )


def _webhook_events_insert(messages: list[WebhookMessage]) -> int:
    if not messages:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO webhook_events (source, event_type, payload, received_at)
            SELECT * FROM unnest(%s::varchar[], %s::varchar[], %s::jsonb[], %s::timestamptz[])
            """,
            [
                [message.source for message in messages],
                [message.event_type for message in messages],
                [json.dumps(message.payload) for message in messages],
                [message.accepted_at for message in messages],
            ],
        )
        return cursor.rowcount


@transaction.atomic
def messages_store(*, messages: list[PipelineMessage]) -> StoreOutcome:
    """Store a batch of messages in one transaction; already processed ones are skipped."""
    unique = list({message.message_id: message for message in messages}.values())
    fresh_ids = _ledger_claim(unique, timezone.now())
    fresh = [message for message in unique if message.message_id in fresh_ids]
    batches = [message for message in fresh if isinstance(message, DeviceBatch)]
    readings_inserted = _readings_insert(batches)
    events_inserted = _events_insert(batches)
    if batches:
        _devices_mark_seen(batches)
    webhook_events_inserted = _webhook_events_insert(
        [message for message in fresh if isinstance(message, WebhookMessage)]
    )
    readings_total = sum(len(batch.readings) for batch in batches)
    return StoreOutcome(
        messages_stored=len(fresh),
        messages_already_processed=len(messages) - len(fresh),
        readings_inserted=readings_inserted,
        readings_duplicate=readings_total - readings_inserted,
        events_inserted=events_inserted,
        webhook_events_inserted=webhook_events_inserted,
    )
