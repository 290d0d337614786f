from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework import exceptions, parsers

from glassbox.api.exceptions import PayloadTooLarge


class BoundedJSONParser(parsers.JSONParser):
    """JSON only, with a size cap and no way to turn malformed input into a 500.

    Django caps form bodies (DATA_UPLOAD_MAX_MEMORY_SIZE) but DRF reads JSON straight from
    the stream, so the cap is enforced here. Deeply nested documents make ``json`` raise
    RecursionError, which DRF's parser does not catch.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if stream is None:
            raise exceptions.ParseError("Request body is empty.")
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise exceptions.ParseError(f"JSON parse error: {exc}") from exc


def _reject_constant(name: str) -> None:
    # NaN/Infinity are not JSON and would not survive a round trip through the database.
    raise ValueError(f"{name} is not valid JSON")
