from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.db import models
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

if TYPE_CHECKING:
    from tenants.scoping import TenantModel

MAX_JSON_DEPTH = 32
# Ids are positive 64-bit integers; the schema says so and the API holds to it.
MAX_ID = 2**63 - 1
E164_PATTERN = r"^\+[1-9][0-9]{1,14}$"
MAX_JSON_BYTES = 64 * 1024


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_ID})
class TenantPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """An id that must name an object of the requesting organization.

    Another tenant's id gets the same "does not exist" 400 as a missing one.
    """

    def __init__(self, *, model: type[TenantModel], **kwargs: Any) -> None:
        self.model = model
        super().__init__(**kwargs)

    def get_queryset(self) -> models.QuerySet[Any]:
        organization = self.context.get("organization")
        if organization is None:
            return self.model.objects.none()
        return self.model.objects.for_org(organization)

    def to_internal_value(self, data: Any) -> Any:
        # bool is an int subclass; "true" as an id is a client bug, not object 1.
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("incorrect_type", data_type=type(data).__name__)
        if isinstance(data, str) and not data.isdigit():
            self.fail("incorrect_type", data_type="str")
        if not 1 <= int(data) <= MAX_ID:
            self.fail("does_not_exist", pk_value=data)
        return super().to_internal_value(data)


def _check_json_value(value: Any, depth: int = 0) -> None:
    if depth > MAX_JSON_DEPTH:
        raise serializers.ValidationError(f"Nested deeper than {MAX_JSON_DEPTH} levels.")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(str(key))
            _check_json_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json_value(item, depth + 1)


def _check_text(text: str) -> None:
    # PostgreSQL's jsonb cannot store NUL, and lone surrogates cannot be encoded as UTF-8.
    if "\x00" in text:
        raise serializers.ValidationError("Null characters are not allowed.")
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        raise serializers.ValidationError("Surrogate characters are not allowed.")


@extend_schema_field({"type": "object", "additionalProperties": {}})
class SafeJSONObjectField(serializers.JSONField):
    """A JSON object that the database can store: no NUL, bounded depth and size."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            raise serializers.ValidationError("Expected a JSON object.")
        _check_json_value(value)
        if len(json.dumps(value)) > MAX_JSON_BYTES:
            raise serializers.ValidationError(f"Larger than {MAX_JSON_BYTES} bytes.")
        return value
