from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from glassbox.api.views import ListRetrieveMixin, TenantViewSet
from tenants import selectors, services
from tenants.filters import ApiKeyFilter
from tenants.models import ApiKey, Organization
from tenants.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyInputSerializer,
    ApiKeyOutputSerializer,
)


class ApiKeyViewSet(ListRetrieveMixin, TenantViewSet):
    """Your organization's API keys. A new key is returned once, at creation."""

    model = ApiKey
    input_serializer_class = ApiKeyInputSerializer
    output_serializer_class = ApiKeyOutputSerializer
    filterset_class = ApiKeyFilter

    def access_object(self, organization: Organization, pk: int) -> ApiKey:
        return selectors.access_api_key(organization=organization, api_key_id=pk)

    @extend_schema(request=ApiKeyInputSerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.validated_input(request)
        issued = services.api_key_create(
            organization=self.organization, name=data["name"], scope=data["scope"]
        )
        body = ApiKeyCreatedSerializer(issued.api_key, context={"raw_key": issued.raw_key}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None}, description="Revoke the key (it stays listed).")
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.api_key_revoke(api_key=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
