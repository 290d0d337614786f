"""JSON types checked as declared: no silent coercion of request bodies.

DRF converts what it can: ``{"name": 0}`` becomes ``"0"``, ``"filler_after_s": false``
becomes ``0.0``, ``"12"`` becomes ``12``, ``"yes"`` becomes ``True``. The schema promises
a string, a number, an integer and a boolean, so a client that sends another type has a
bug it should hear about: a 400 naming the field, before the serializer runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.relations import ManyRelatedField, PrimaryKeyRelatedField

EXPECTED = {
    "boolean": "Expected a boolean (true or false).",
    "integer": "Expected an integer.",
    "number": "Expected a number.",
    "string": "Expected a string.",
    "array": "Expected a list.",
    "object": "Expected an object.",
}


def _json_type(field: serializers.Field) -> str | None:
    # Most specific first: IntegerField/FloatField are not CharFields, but ChoiceField
    # and the relation fields need their own answers.
    if isinstance(field, serializers.BooleanField):
        return "boolean"
    if isinstance(field, serializers.IntegerField | PrimaryKeyRelatedField):
        return "integer"
    if isinstance(field, serializers.FloatField | serializers.DecimalField):
        return "number"
    if isinstance(field, serializers.ChoiceField):
        choices = list(field.choices)
        return "string" if all(isinstance(c, str) for c in choices) else None
    if isinstance(field, serializers.CharField | serializers.DateTimeField):
        return "string"
    if isinstance(field, serializers.ListField | ManyRelatedField):
        return "array"
    if isinstance(field, serializers.DictField | serializers.Serializer):
        return "object"
    return None  # JSONField and friends: any JSON


def _matches(kind: str, value: Any) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


def _field_errors(field: serializers.Field, value: Any) -> Any:
    if value is None or field.read_only:
        return None  # null: the field's own allow_null decides
    kind = _json_type(field)
    if kind is None:
        return None
    if not _matches(kind, value):
        return [EXPECTED[kind]]
    if isinstance(field, serializers.Serializer):
        return type_errors(field.fields, value)
    child = getattr(field, "child", None) or getattr(field, "child_relation", None)
    if child is None:
        return None
    items = value.values() if isinstance(value, dict) else value
    if isinstance(value, dict):
        errors = {k: e for k, v in value.items() if (e := _field_errors(child, v))}
    else:
        errors = {i: e for i, v in enumerate(items) if (e := _field_errors(child, v))}
    return errors or None


def type_errors(fields: Mapping[str, serializers.Field], data: Any) -> dict[str, Any]:
    """Errors, by field, for values whose JSON type is not the declared one."""
    if not isinstance(data, dict):
        return {}  # the serializer itself answers "expected a dictionary"
    errors: dict[str, Any] = {}
    for name, field in fields.items():
        if name in data and (error := _field_errors(field, data[name])):
            errors[name] = error
    return errors
