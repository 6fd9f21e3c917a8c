"""Message ids carry their own proof: issued to which device, and when."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ingest.message_ids import message_id_issue, message_id_verify

AT = datetime(2026, 11, 23, 7, 0, 0, 123000, tzinfo=UTC)


def test_an_issued_id_verifies_for_its_device_with_its_time():
    message_id = message_id_issue(device_id=7, at=AT)

    verified = message_id_verify(message_id=message_id, device_id=7)

    assert verified is not None and verified.issued_at == AT
    assert message_id.version == 8 and message_id.variant == uuid.RFC_4122


def test_an_id_issued_to_another_device_does_not_verify():
    message_id = message_id_issue(device_id=7, at=AT)

    assert message_id_verify(message_id=message_id, device_id=8) is None


@pytest.mark.parametrize("bit", [0, 13, 40, 62 + 1, 70, 90, 100, 127])
def test_any_changed_bit_outside_version_and_variant_fails(bit):
    message_id = message_id_issue(device_id=7, at=AT)
    tampered = uuid.UUID(int=message_id.int ^ (1 << bit))

    assert message_id_verify(message_id=tampered, device_id=7) is None


def test_moving_the_timestamp_fails():
    message_id = message_id_issue(device_id=7, at=AT)
    one_day_ms = 86_400_000
    older = uuid.UUID(int=message_id.int - (one_day_ms << 80))

    assert message_id_verify(message_id=older, device_id=7) is None


def test_random_and_other_version_ids_do_not_verify():
    assert message_id_verify(message_id=uuid.uuid4(), device_id=7) is None
    assert message_id_verify(message_id=uuid.uuid5(uuid.NAMESPACE_URL, "x"), device_id=7) is None
    forged_v8 = uuid.UUID(int=(uuid.uuid4().int & ~(0xF << 76)) | (8 << 76))
    assert message_id_verify(message_id=forged_v8, device_id=7) is None


def test_a_different_secret_key_makes_the_ids_invalid_unless_the_old_one_is_a_fallback(settings):
    message_id = message_id_issue(device_id=7, at=AT)
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    settings.SECRET_KEY_FALLBACKS = []

    assert message_id_verify(message_id=message_id, device_id=7) is None

    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert message_id_verify(message_id=message_id, device_id=7) is not None


def test_ids_are_unique_and_ordered_by_time():
    ids = [message_id_issue(device_id=7, at=AT) for _ in range(20_000)]
    later = message_id_issue(device_id=7, at=AT + timedelta(milliseconds=1))

    assert len(set(ids)) == len(ids)
    assert all(later > message_id for message_id in ids)
