"""The API's request parser: DRF's JSON parser, reading through ``json_parse``."""

from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from ingest.json_input import JsonInputError, json_parse


class StrictJSONParser(JSONParser):
    """JSON the pipeline can store: UTF-8, no NaN/Infinity, nesting bounded (else 400)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return json_parse(stream.read())
        except JsonInputError as error:
            raise ParseError(f"JSON parse error - {error}") from None
