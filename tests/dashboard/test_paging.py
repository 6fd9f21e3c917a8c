"""Keyset pages and their cursor: written by the pager, read back by the list's form only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dashboard.filters import Cursor, PageForm
from dashboard.paging import keyset_page
from ingest.models import DeadLetter
from tests.factories import DeadLetterFactory


def test_a_cursor_reads_back_what_the_pager_wrote():
    at = datetime(2026, 11, 23, 7, 0, 5, 123456, tzinfo=UTC)
    for cursor in (Cursor(42), Cursor(42, at)):
        assert Cursor.from_text(cursor.to_text()) == cursor
    assert Cursor.from_text("2026-11-23T07:00:00|5").at == datetime(2026, 11, 23, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    "text", ["", "x", "5|", "|", "²", "-5", "9" * 30, "2026-02-30T00:00:00|5", "yesterday|5", "2026-11-23|x"]
)
def test_a_cursor_the_pager_did_not_write_is_refused(text):
    with pytest.raises(ValueError):
        Cursor.from_text(text)
    if text:
        form = PageForm({"before": text})
        assert not form.is_valid() and form.cursor() is None


@pytest.mark.django_db
def test_pages_follow_each_other_without_repeating_or_skipping_rows():
    letters = DeadLetterFactory.create_batch(7)
    seen, cursor = [], None
    while True:
        page = keyset_page(DeadLetter.objects.all(), cursor=cursor, size=3)
        seen += page.rows
        if not page.has_next:
            break
        cursor = PageForm({"before": page.next_cursor}).cursor()
    assert [letter.pk for letter in seen] == sorted((letter.pk for letter in letters), reverse=True)
