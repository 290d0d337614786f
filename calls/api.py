from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from calls import selectors, services
from calls.filters import CallFilter, PhoneNumberFilter
from calls.models import Call, PhoneNumber
from calls.serializers import (
    CallDetailSerializer,
    CallOutputSerializer,
    PhoneNumberInputSerializer,
    PhoneNumberOutputSerializer,
)
from glassbox.api.views import ListRetrieveMixin, TenantCRUDViewSet, TenantViewSet
from tenants.models import Organization


class PhoneNumberViewSet(TenantCRUDViewSet):
    """Phone numbers on a carrier account, each answered by one agent."""

    model = PhoneNumber
    input_serializer_class = PhoneNumberInputSerializer
    output_serializer_class = PhoneNumberOutputSerializer
    filterset_class = PhoneNumberFilter

    def access_object(self, organization: Organization, pk: int) -> PhoneNumber:
        return selectors.access_phone_number(organization=organization, phone_number_id=pk)

    def perform_create_service(self, data: dict[str, Any]) -> PhoneNumber:
        return services.phone_number_create(organization=self.organization, data=data)

    def perform_update_service(self, instance: PhoneNumber, data: dict[str, Any]) -> PhoneNumber:
        return services.phone_number_update(phone_number=instance, data=data)

    def perform_delete_service(self, instance: PhoneNumber) -> None:
        services.phone_number_delete(phone_number=instance)


class CallViewSet(ListRetrieveMixin, TenantViewSet):
    """Calls, newest first. The detail view carries the transcript, the per-turn latency
    timeline (``metrics``) and tool calls; calls are created by carriers, not the API."""

    model = Call
    output_serializer_class = CallOutputSerializer
    filterset_class = CallFilter

    def get_serializer_class(self) -> type[serializers.Serializer]:
        if self.action == "retrieve":
            return CallDetailSerializer
        return CallOutputSerializer

    def safely_get_queryset(self, queryset: QuerySet[Call]) -> QuerySet[Call]:
        return queryset.select_related("agent", "phone_number")

    def access_object(self, organization: Organization, pk: int) -> Call:
        return selectors.access_call(organization=organization, call_id=pk)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        call = self.get_object()
        return Response(CallDetailSerializer(call, context=self.get_serializer_context()).data)
