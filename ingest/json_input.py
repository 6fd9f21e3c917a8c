"""JSON from outside, read so that what is accepted can also be stored.

Python's ``json`` accepts things PostgreSQL refuses: ``NaN`` and ``Infinity``, numbers
such as ``1e400`` that overflow to infinity, lone UTF-16 surrogates (``"\\ud800"``) and NUL
(``"\\u0000"``), neither of which text or jsonb can hold. Its parser also recurses, so a
document nested a thousand levels deep raises ``RecursionError``. Every entrance (the
API, webhooks, collection, file import, the worker's decoder) parses with ``json_parse``
and checks free-form values with ``json_value_problem``: a refusal names the field,
instead of a 202 followed by a dead letter, or a 500.
"""

from __future__ import annotations

import json
import math
from typing import Any

# No sender needs more; deeper documents are refused before anything walks them.
JSON_MAX_DEPTH = 64

NUL_REFUSED = "Must not contain NUL characters (\\u0000)."
SURROGATE_REFUSED = "Must not contain a lone UTF-16 surrogate (such as \\ud800)."
NOT_FINITE_REFUSED = "Must be a finite number (NaN, Infinity and numbers too large for a double are refused)."


class JsonInputError(ValueError):
    """The document is not JSON this service reads (the message says why)."""


def _constant_refuse(name: str) -> float:
    raise JsonInputError(f"{name} is not a JSON value")


# One decoder for every call: json.loads with options builds a new one each time, which
# costs more than parsing a small document.
_DECODER = json.JSONDecoder(parse_constant=_constant_refuse)


def json_depth_exceeds(document: Any, limit: int) -> bool:
    """True if containers nest deeper than ``limit``; iterative, so any depth is safe."""
    stack = [(document, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def json_parse(raw: bytes | str, *, max_depth: int | None = JSON_MAX_DEPTH) -> Any:
    """Parse UTF-8 JSON strictly: no NaN/Infinity literals, at most ``max_depth`` levels.

    Raises ``JsonInputError`` (a ``ValueError``) for anything else, including bytes that
    are not UTF-8 (an encoded surrogate among them) and nesting the parser cannot follow.
    ``max_depth=None``: the caller bounds the nesting of the parts that may nest itself.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        document = _DECODER.decode(text)
    except RecursionError:
        raise JsonInputError(
            f"the JSON is nested more than {max_depth or JSON_MAX_DEPTH} levels deep"
        ) from None
    except UnicodeDecodeError as error:
        raise JsonInputError(f"the body is not UTF-8: {error}") from None
    except JsonInputError:
        raise
    except ValueError as error:
        raise JsonInputError(str(error)) from None
    if (
        max_depth is not None
        and isinstance(document, dict | list)
        and json_depth_exceeds(document, max_depth)
    ):
        raise JsonInputError(f"the JSON is nested more than {max_depth} levels deep")
    return document


def text_problem(value: str) -> str | None:
    """Why PostgreSQL text (or jsonb) cannot hold this string, or None if it can."""
    if "\x00" in value:
        return NUL_REFUSED
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_REFUSED
    return None


def text_escaped(value: str) -> str:
    """The string with what PostgreSQL cannot hold escaped (``\\x00``, ``\\ud800``)."""
    if text_problem(value) is None:
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def json_value_problem(value: Any) -> tuple[str, str] | None:
    """The first place in a parsed JSON value that jsonb cannot store, and why.

    The place is a dotted path (``"a.b.0"``; ``""`` for the value itself), escaped so
    that it can be shown back to the sender.
    """
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            children = []
            for key, child in item.items():
                key_path = (*path, text_escaped(str(key)))
                if problem := text_problem(str(key)):
                    return ".".join(key_path), f"Key: {problem}"
                children.append((child, key_path))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(reversed([(child, (*path, str(index))) for index, child in enumerate(item)]))
        elif isinstance(item, str):
            if problem := text_problem(item):
                return ".".join(path), problem
        elif isinstance(item, float) and not math.isfinite(item):
            return ".".join(path), NOT_FINITE_REFUSED
    return None
