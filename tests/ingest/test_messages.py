"""The pipeline's own headers, read and written in one place (pure logic: no broker, no database)."""

from __future__ import annotations

from datetime import UTC, datetime

from ingest.messages import FailureEnvelope, failure_times_of


def test_failure_times_are_read_from_the_header_skipping_what_is_not_a_time():
    headers = {"x-failures": ["2026-11-23T07:00:00+00:00", "yesterday", 42, "2026-11-23T07:00:01"]}
    assert failure_times_of(headers) == [
        datetime(2026, 11, 23, 7, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 23, 7, 0, 1, tzinfo=UTC),  # no zone given: UTC
    ]


def test_a_missing_or_malformed_failures_header_means_no_recorded_failure():
    assert failure_times_of({}) == []
    assert failure_times_of({"x-failures": "2026-11-23T07:00:00+00:00"}) == []  # not a list
    assert FailureEnvelope.from_headers({}).attempts == 0


def _failing() -> ValueError:
    try:
        raise ValueError("  device 7 is gone  ")
    except ValueError as error:
        return error


def test_a_failure_envelope_survives_the_round_trip_through_headers():
    first, second = datetime(2026, 11, 23, 7, 0, tzinfo=UTC), datetime(2026, 11, 23, 7, 1, tzinfo=UTC)
    envelope = (
        FailureEnvelope()
        .after_failure(_failing(), at=first)
        .after_failure(_failing(), at=second)
        .dead(original_queue="ingest", original_routing_key="ingest")
    )

    headers = envelope.applied_to({"schema_version": 1, "x-failures": ["2026-01-01T00:00:00+00:00"]})
    restored = FailureEnvelope.from_headers(headers)

    assert restored == envelope
    assert restored.attempts == 2 and restored.failures == (first, second)
    assert restored.error_class == "builtins.ValueError"
    assert restored.error_message == "device 7 is gone"
    assert "Traceback" in restored.traceback and "_failing" in restored.traceback
    assert headers["schema_version"] == 1  # the message's other headers are kept


def test_the_failure_headers_on_the_wire():
    """The names are a format shared with messages already on queues: they must not drift."""
    at = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
    headers = FailureEnvelope().after_failure(_failing(), at=at).to_headers()
    assert set(headers) == {"x-failures", "x-error-class", "x-error-message", "x-traceback"}
    assert headers["x-failures"] == ["2026-11-23T07:00:00+00:00"]
    dead = (
        FailureEnvelope.from_headers(headers).dead(original_queue="q", original_routing_key="rk").to_headers()
    )
    assert dead["x-original-queue"] == "q" and dead["x-original-routing-key"] == "rk"


def test_headers_from_anywhere_are_read_as_text_never_refused():
    headers = {"x-error-class": b"caf\xc3\xa9 \xff", "x-error-message": 42, "x-traceback": None}
    envelope = FailureEnvelope.from_headers(headers)
    assert envelope.error_class == "café \\xff"
    assert envelope.error_message == "42"
    assert envelope.traceback == ""
