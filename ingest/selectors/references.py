"""How an operator names a device or a resident in a filter: by id, or by serial or name.

Digits 0-9 are the record's id; any other text is its serial number (devices) or part of
its name (residents). Parsed and applied here only: the console's form fields
(``dashboard.filters.ReferenceField``), its record lists, the failed-message list and the
bulk plans built from it all go through ``Reference.parse`` and ``Reference.q``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q

# Primary keys are PostgreSQL bigints: a larger number is no id (and would be a DataError).
ID_MAX = 2**63 - 1
ASCII_DIGITS = frozenset("0123456789")


def record_id_parse(text: str) -> int:
    """A primary key written in digits 0-9; ValueError (saying why) for anything else."""
    if not text or not set(text) <= ASCII_DIGITS:
        raise ValueError(f"{text!r} is not an id (digits 0-9).")
    if int(text) > ID_MAX:
        raise ValueError("No id is this large.")
    return int(text)


@dataclass(frozen=True)
class Reference:
    """One kind of reference: what its text means and how that text is looked up."""

    text_meaning: str  # for error messages: "a serial number"
    text_lookup: str  # the lookup the text is matched with, relative to the record

    def parse(self, text: str) -> int | str:
        """The id (an int) or the text (a str) ``text`` names; ValueError saying why not."""
        if set(text) <= ASCII_DIGITS:
            return record_id_parse(text)
        # "²" or "٣" are digits to str.isdigit() but no id and no plausible serial or name.
        if any(character.isdigit() for character in text if character not in ASCII_DIGITS):
            raise ValueError(
                f"Enter an id (digits 0-9) or {self.text_meaning}; {text!r} contains other digits."
            )
        return text

    def q(self, value: int | str, *, path: str = "") -> Q:
        """The condition "is the record ``value`` names", for a record reached through ``path``.

        ``path`` is the relation from the queried model ("device", "device__resident"),
        or "" when the queried model is the referenced one.
        """
        if isinstance(value, int):
            return Q(**{f"{path}_id" if path else "pk": value})
        return Q(**{f"{path}__{self.text_lookup}" if path else self.text_lookup: value})


DEVICE_REFERENCE = Reference(text_meaning="a serial number", text_lookup="serial_no")
RESIDENT_REFERENCE = Reference(text_meaning="a name", text_lookup="full_name__icontains")
