import django_filters

from calls.models import Call, CallStatus, Carrier, Direction, PhoneNumber
from glassbox.api.filters import IdFilter, UtcDateTimeFilter


class PhoneNumberFilter(django_filters.FilterSet):
    agent = IdFilter(field_name="agent_id")
    carrier = django_filters.ChoiceFilter(choices=Carrier.choices)
    number = django_filters.CharFilter(lookup_expr="icontains", max_length=32)

    class Meta:
        model = PhoneNumber
        fields = ("agent", "carrier", "number")


class CallFilter(django_filters.FilterSet):
    agent = IdFilter(field_name="agent_id")
    phone_number = IdFilter(field_name="phone_number_id")
    status = django_filters.ChoiceFilter(choices=CallStatus.choices)
    direction = django_filters.ChoiceFilter(choices=Direction.choices)
    started_after = UtcDateTimeFilter(field_name="started_at", lookup_expr="gte")
    started_before = UtcDateTimeFilter(field_name="started_at", lookup_expr="lt")

    class Meta:
        model = Call
        fields = ("agent", "phone_number", "status", "direction", "started_after", "started_before")
