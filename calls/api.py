from __future__ import annotations

from typing import Any

from calls import selectors, services
from calls.filters import PhoneNumberFilter
from calls.models import PhoneNumber
from calls.serializers import PhoneNumberInputSerializer, PhoneNumberOutputSerializer
from glassbox.api.views import TenantCRUDViewSet
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
