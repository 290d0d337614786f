from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from tenants.models import Organization
from webhooks.models import Delivery, WebhookEndpoint


def endpoint_list(*, organization: Organization) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.for_org(organization)


def access_endpoint(*, organization: Organization, endpoint_id: int) -> WebhookEndpoint:
    try:
        return endpoint_list(organization=organization).get(pk=endpoint_id)
    except WebhookEndpoint.DoesNotExist as exc:
        raise Http404("No such webhook endpoint.") from exc


def delivery_list(*, organization: Organization) -> QuerySet[Delivery]:
    return Delivery.objects.for_org(organization).select_related("event", "endpoint", "agent")


def access_delivery(*, organization: Organization, delivery_id: int) -> Delivery:
    try:
        return delivery_list(organization=organization).get(pk=delivery_id)
    except Delivery.DoesNotExist as exc:
        raise Http404("No such delivery.") from exc
