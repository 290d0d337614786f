from datetime import UTC
from typing import Any

import django_filters
from django import forms

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
