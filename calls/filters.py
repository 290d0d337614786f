import django_filters
from django.db.models import QuerySet

from calls.models import Call, CallStatus, Carrier, Direction, PhoneNumber
from calls.selectors import call_transcript_contains
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
    end_reason = django_filters.CharFilter(max_length=32)
    q = django_filters.CharFilter(
        method="filter_transcript", max_length=200, label="Text in the transcript"
    )

    class Meta:
        model = Call
        fields = (
            "agent",
            "phone_number",
            "status",
            "direction",
            "started_after",
            "started_before",
            "end_reason",
            "q",
        )

    def filter_transcript(self, queryset: QuerySet[Call], name: str, value: str) -> QuerySet[Call]:
        if not value:
            return queryset
        organization = self.request.auth.organization
        return queryset.filter(call_transcript_contains(organization=organization, text=value))
