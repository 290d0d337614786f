import django_filters

from glassbox.api.filters import IdFilter
from webhooks.models import Delivery, DeliveryState, EndpointState, EventType, WebhookEndpoint


class WebhookEndpointFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=EndpointState.choices)

    class Meta:
        model = WebhookEndpoint
        fields = ("state",)


class DeliveryFilter(django_filters.FilterSet):
    endpoint = IdFilter(field_name="endpoint_id")
    agent = IdFilter(field_name="agent_id")
    state = django_filters.ChoiceFilter(choices=DeliveryState.choices)
    event_type = django_filters.ChoiceFilter(field_name="event__type", choices=EventType.choices)
    event = django_filters.CharFilter(field_name="event__public_id", max_length=40)

    class Meta:
        model = Delivery
        fields = ("endpoint", "agent", "state", "event_type", "event")
