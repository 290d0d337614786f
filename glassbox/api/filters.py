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
