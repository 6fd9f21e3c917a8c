"""A dead letter's body on its page: text where it is text, otherwise said to be binary."""

from __future__ import annotations

import html

import pytest

from tests.factories import DeadLetterFactory

pytestmark = pytest.mark.django_db


def _page(client, dead) -> str:
    response = client.get(f"/console/failed/{dead.pk}/")
    assert response.status_code == 200
    return html.unescape(response.content.decode())


@pytest.mark.parametrize(
    ("body", "escaped", "hex_part"),
    [
        (b"\x00\x01\xff tail", "\\x00\\x01\\xff tail", "00 01 ff 20"),
        (b'{"note": "nul \x00 inside"}', '{"note": "nul \\x00 inside"}', "7b 22 6e"),
    ],
)
def test_a_binary_body_is_shown_as_binary_with_its_size_escaped_and_in_hex(
    viewer_client, body, escaped, hex_part
):
    content = _page(viewer_client, DeadLetterFactory(body=body))
    assert f"binary, {len(body)} bytes" in content
    assert escaped in content
    assert hex_part in content


def test_a_text_body_is_shown_as_text_and_json_pretty_printed(viewer_client):
    json_page = _page(viewer_client, DeadLetterFactory(body='{"room": "caf\u00e9", "n": 1}'.encode()))
    assert '"n": 1,\n  "room": "caf\\u00e9"' in json_page
    assert "binary," not in json_page
    text_page = _page(viewer_client, DeadLetterFactory(body="plain caf\u00e9 text".encode()))
    assert "plain caf\u00e9 text" in text_page
    assert "binary," not in text_page


def test_a_deeply_nested_json_body_is_shown_as_sent(viewer_client):
    body = b"[" * 5000 + b"]" * 5000
    content = _page(viewer_client, DeadLetterFactory(body=body))
    assert "[" * 5000 in content


def test_a_letter_recorded_in_part_says_what_the_database_refused(viewer_client):
    dead = DeadLetterFactory(recording_error="CheckViolation: new row violates check constraint")
    assert "Recorded in part" in _page(viewer_client, dead)
    assert "Recorded in part" not in _page(viewer_client, DeadLetterFactory())


def test_the_list_marks_letters_recorded_in_part(viewer_client):
    in_part = DeadLetterFactory(recording_error="CheckViolation: new row violates check constraint")
    whole = DeadLetterFactory()
    rows = {
        row.split('href="/console/failed/')[1].split("/")[0]: row
        for row in viewer_client.get("/console/failed/").content.decode().split("<tr")
        if 'href="/console/failed/' in row
    }
    assert "recorded in part" in rows[str(in_part.pk)]
    assert "recorded in part" not in rows[str(whole.pk)]
