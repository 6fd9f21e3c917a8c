"""The pipeline's own headers, read in one place (pure logic: no broker, no database)."""

from __future__ import annotations

from datetime import UTC, datetime

from ingest.messages import HEADER_FAILURES, failure_times_of


def test_failure_times_are_read_from_the_header_skipping_what_is_not_a_time():
    headers = {HEADER_FAILURES: ["2026-11-23T07:00:00+00:00", "yesterday", 42, "2026-11-23T07:00:01"]}
    assert failure_times_of(headers) == [
        datetime(2026, 11, 23, 7, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 23, 7, 0, 1, tzinfo=UTC),  # no zone given: UTC
    ]


def test_a_missing_or_malformed_failures_header_means_no_recorded_failure():
    assert failure_times_of({}) == []
    assert failure_times_of({HEADER_FAILURES: "2026-11-23T07:00:00+00:00"}) == []  # not a list
