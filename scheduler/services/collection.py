"""Pulling device data from partner systems into the same pipeline as the ingest API."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from core.errors import ApplicationError
from ingest.json_input import json_parse
from ingest.models import DeviceStatus
from ingest.record_validation import device_records_split
from ingest.services.ingestion import records_chunks, records_chunks_accept_once
from scheduler.models import CollectionRun, CollectionSource
from scheduler.services.outbound_http import FetchError, FetchPolicy, FetchTimedOut, url_get

logger = logging.getLogger(__name__)
REJECTIONS_KEPT = 100


class CollectionError(Exception):
    """The source could not be read (after retries), or did not answer a JSON object."""


def _credentials(source: CollectionSource) -> tuple[str, str] | None:
    if not source.auth_header:
        return None
    name, _, value = source.auth_header.partition(":")
    return name.strip(), value.strip()


def source_fetch(source: CollectionSource) -> dict:
    """GET the source within COLLECTION_TIMEOUT_SECONDS in all; retry 5xx and connection errors.

    The timeout is one deadline for the whole fetch, retries and redirects included: a
    slow or trickling source cannot hold the job (and every source after it) for longer.
    """
    timeout = settings.COLLECTION_TIMEOUT_SECONDS
    deadline = time.monotonic() + timeout
    policy = FetchPolicy.with_networks(
        max_bytes=settings.COLLECTION_MAX_RESPONSE_BYTES,
        allowed_private_networks=settings.COLLECTION_ALLOWED_PRIVATE_NETWORKS,
    )
    attempts = settings.COLLECTION_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            body = url_get(
                source.url,
                headers={"Accept": "application/json", "User-Agent": "iot_care-collector"},
                credentials=_credentials(source),
                deadline=deadline,
                policy=policy,
            )
            break
        except FetchTimedOut as error:
            raise CollectionError(f"timed out after {timeout:g} s (COLLECTION_TIMEOUT_SECONDS)") from error
        except FetchError as error:
            delay = settings.COLLECTION_RETRY_DELAY_SECONDS * 2 ** (attempt - 1)
            if not error.retryable:
                raise CollectionError(str(error)) from error
            if attempt == attempts or time.monotonic() + delay >= deadline:
                raise CollectionError(f"{error} (after {attempt} attempts)") from error
            time.sleep(delay)
    try:
        data = json_parse(body)
    except ValueError as error:
        raise CollectionError(f"answer is not JSON: {error}") from error
    if not isinstance(data, dict):
        raise CollectionError("answer is not a JSON object with 'readings' and/or 'events'")
    return data


def _publish(source: CollectionSource, readings: list, events: list) -> int:
    """Publish in messages the size the API allows, all confirmed by the broker.

    A feed answering the same records again (nothing new since the last poll) must not
    store its events twice: message ids follow the content, and the ledger skips repeats.
    """
    chunks = records_chunks(
        device=source.device,
        origin=f"collect:{source.name}",
        readings=readings,
        events=events,
        size=settings.INGEST_MAX_RECORDS,
    )
    return records_chunks_accept_once(chunks=chunks).records_published


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
