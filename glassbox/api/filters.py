from datetime import UTC
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import serializers

# Foreign-key lookups skip Django's out-of-range guard for integer columns, and SQLite
# raises OverflowError on a too-large int: bound ids in query strings up front.
MAX_ID = 2**63 - 1


class IdFilter(django_filters.Filter):
    field_class = forms.IntegerField

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 instant, compared in UTC.

    Python accepts UTC offsets up to ±23:59, PostgreSQL only up to ±15:59; an instant sent
    with a larger offset must still be a valid filter, not a database error.
    """

    def filter(self, qs: Any, value: Any) -> Any:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return super().filter(qs, value)


class StrictBooleanField(forms.Field):
    """``true`` or ``false`` (also ``1``/``0``); anything else is an error, not "unset".

    Django's NullBooleanField reads ``null``, ``maybe`` or ``2`` as "no filter", so a typo
    silently returned every row."""

    TRUE = ("true", "True", "1")
    FALSE = ("false", "False", "0")

    def to_python(self, value: Any) -> bool | None:
        if value is None:
            return None
        if value in self.TRUE:
            return True
        if value in self.FALSE:
            return False
        raise ValidationError("Expected true or false.", code="invalid")


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class StrictFilterBackend(DjangoFilterBackend):
    """django-filter, except that an empty value is not "no filter".

    ``?kind=`` or ``?agent=`` is a client bug (an unset variable in a template, say);
    django-filter would silently return every row. Text filters (``?name=``) may be
    empty; every other filter must have a value, or the request is a 400.
    """

    def filter_queryset(self, request: Any, queryset: Any, view: Any) -> Any:
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None:
            errors = {
                name: ["Expected a value."]
                for name, declared in filterset_class.base_filters.items()
                if not isinstance(declared, django_filters.CharFilter)
                and any(v == "" for v in request.query_params.getlist(name))
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().filter_queryset(request, queryset, view)
