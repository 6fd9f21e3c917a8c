"""Pulling device data from partner systems into the same pipeline as the ingest API."""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from ingest.errors import ApplicationError
from ingest.json_input import json_parse
from ingest.models import DeviceStatus
from ingest.serializers import device_records_split
from ingest.services.ingestion import content_message_id, device_batch_accept_once
from scheduler.models import CollectionRun, CollectionSource

logger = logging.getLogger(__name__)
REJECTIONS_KEPT = 100


class CollectionError(Exception):
    """The source could not be read (after retries), or did not answer a JSON object."""


def _request(source: CollectionSource) -> urllib.request.Request:
    request = urllib.request.Request(
        source.url, headers={"Accept": "application/json", "User-Agent": "iot_care-collector"}
    )
    if source.auth_header:
        name, _, value = source.auth_header.partition(":")
        request.add_header(name.strip(), value.strip())
    return request


def source_fetch(source: CollectionSource) -> dict:
    """GET the source with a timeout; retry timeouts, connection errors and 5xx with backoff."""
    attempts = settings.COLLECTION_ATTEMPTS
    delay = settings.COLLECTION_RETRY_DELAY_SECONDS
    last_error = ""
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(
                _request(source), timeout=settings.COLLECTION_TIMEOUT_SECONDS
            ) as response:
                body = response.read(settings.INGEST_MAX_BODY_BYTES + 1)
            break
        except urllib.error.HTTPError as error:
            last_error = f"HTTP {error.code} from {source.url}"
            if error.code < 500:
                raise CollectionError(last_error) from error  # the request itself is wrong: no retry
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            last_error = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
        if attempt < attempts:
            time.sleep(delay * 2 ** (attempt - 1))
    else:
        raise CollectionError(f"{last_error} (after {attempts} attempts)")
    if len(body) > settings.INGEST_MAX_BODY_BYTES:
        raise CollectionError(f"answer larger than {settings.INGEST_MAX_BODY_BYTES} bytes")
    try:
        data = json_parse(body)
    except ValueError as error:
        raise CollectionError(f"answer is not JSON: {error}") from error
    if not isinstance(data, dict):
        raise CollectionError("answer is not a JSON object with 'readings' and/or 'events'")
    return data


def _publish(source: CollectionSource, readings: list, events: list) -> int:
    """Publish in batches the size the API allows; each batch confirmed by the broker."""
    published = 0
    size = settings.INGEST_MAX_RECORDS
    records = [("reading", record) for record in readings] + [("event", record) for record in events]
    for start in range(0, len(records), size):
        chunk = records[start : start + size]
        readings = [record for kind, record in chunk if kind == "reading"]
        events = [record for kind, record in chunk if kind == "event"]
        # A feed answering the same records again (nothing new since the last poll) must
        # not store its events twice: the id follows the content, the ledger skips repeats.
        message_id = content_message_id(origin=f"collect:{source.name}", readings=readings, events=events)
        if device_batch_accept_once(
            device=source.device, readings=readings, events=events, message_id=message_id
        ):
            published += len(chunk)
    return published


def source_collect(*, source: CollectionSource, now: datetime | None = None) -> CollectionRun:
    """Fetch one source, validate each record like the API, publish the valid ones, record the run."""
    started = now or timezone.now()
    run = CollectionRun(source=source, started_at=started, status=CollectionRun.Status.OK)
    try:
        if source.device.status != DeviceStatus.ACTIVE:
            raise CollectionError(f"device {source.device.serial_no} is {source.device.status}")
        data = source_fetch(source)
        split = device_records_split(data)
        run.fetched = split.total
        run.rejected = len(split.rejections)
        run.rejections = split.rejections[:REJECTIONS_KEPT]
        run.published = _publish(source, split.readings, split.events)
        if split.rejections:
            run.status = CollectionRun.Status.PARTIAL
    except (CollectionError, ApplicationError) as error:
        run.status = CollectionRun.Status.FAILED
        run.error = str(getattr(error, "message", error))
        logger.warning("collection from %s failed: %s", source.name, run.error)
    run.finished_at = timezone.now()
    run.save()
    source.last_run_at = started
    source.save(update_fields=["last_run_at"])
    return run


def sources_due(*, now: datetime) -> list[CollectionSource]:
    return [
        source
        for source in CollectionSource.objects.filter(is_enabled=True)
        .select_related("device")
        .order_by("name")
        if source.last_run_at is None
        or source.last_run_at + timedelta(seconds=source.interval_seconds) <= now
    ]


def sources_collect_due(*, now: datetime | None = None) -> list[CollectionRun]:
    """Collect every due source; one failing source never stops the others."""
    now = now or timezone.now()
    runs = []
    for source in sources_due(now=now):
        try:
            runs.append(source_collect(source=source, now=now))
        except Exception as error:  # noqa: BLE001 - recorded on the run, the next source still goes
            logger.exception("collection from %s crashed", source.name)
            runs.append(
                CollectionRun.objects.create(
                    source=source,
                    started_at=now,
                    finished_at=timezone.now(),
                    status=CollectionRun.Status.FAILED,
                    error=f"{type(error).__name__}: {error}",
                )
            )
    return runs
