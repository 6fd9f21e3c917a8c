"""A device or resident named in a filter: digits 0-9 are its id, other text its serial or name."""

from __future__ import annotations

import pytest

from ingest.selectors.references import DEVICE_REFERENCE, RESIDENT_REFERENCE


def test_digits_are_an_id_and_other_text_a_serial():
    assert DEVICE_REFERENCE.parse("42") == 42
    assert DEVICE_REFERENCE.parse("VIT-42") == "VIT-42"


@pytest.mark.parametrize(
    ("text", "reason"),
    [("²", "contains other digits"), ("٣", "contains other digits"), ("9" * 20, "No id is this large")],
)
def test_what_is_neither_an_id_nor_text_is_refused_saying_why(text, reason):
    with pytest.raises(ValueError, match=reason):
        DEVICE_REFERENCE.parse(text)


def test_a_reference_applies_to_the_record_itself_or_through_a_relation():
    assert DEVICE_REFERENCE.q(42).children == [("pk", 42)]
    assert DEVICE_REFERENCE.q("VIT-42", path="device").children == [("device__serial_no", "VIT-42")]
    assert DEVICE_REFERENCE.q(42, path="device").children == [("device_id", 42)]
    assert RESIDENT_REFERENCE.q("ada", path="device__resident").children == [
        ("device__resident__full_name__icontains", "ada")
    ]
