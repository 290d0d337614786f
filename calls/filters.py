import django_filters

from calls.models import Carrier, PhoneNumber
from glassbox.api.filters import IdFilter


class PhoneNumberFilter(django_filters.FilterSet):
    agent = IdFilter(field_name="agent_id")
    carrier = django_filters.ChoiceFilter(choices=Carrier.choices)
    number = django_filters.CharFilter(lookup_expr="icontains", max_length=32)

    class Meta:
        model = PhoneNumber
        fields = ("agent", "carrier", "number")
