from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from glassbox.api.views import ListRetrieveMixin, TenantViewSet
from tenants import selectors, services
from tenants.filters import ApiKeyFilter, AuditLogFilter
from tenants.models import ApiKey, AuditLogEntry, Organization
from tenants.permissions import FullAccessKeyPermission
from tenants.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyInputSerializer,
    ApiKeyOutputSerializer,
    AuditLogEntrySerializer,
    DataSettingsSerializer,
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


class OrganizationViewSet(TenantViewSet):
    """Your organization's data settings: retention of recordings and transcripts, and
    redaction of transcripts. Changes are recorded in the audit log."""

    # Rows of the audit log a change adds; the organization itself is the credential's.
    model = AuditLogEntry
    input_serializer_class = DataSettingsSerializer
    output_serializer_class = DataSettingsSerializer
    pagination_class = None

    @extend_schema(responses={200: DataSettingsSerializer})
    def current(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(DataSettingsSerializer(self.organization).data)

    @extend_schema(request=DataSettingsSerializer, responses={200: DataSettingsSerializer})
    def update_current(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.validated_input(request, partial=True)
        organization = services.organization_data_settings_update(
            organization=self.organization, actor=services.Actor.of_request(request.auth), data=data
        )
        return Response(DataSettingsSerializer(organization).data)


class AuditLogViewSet(ListRetrieveMixin, TenantViewSet):
    """Who deleted calls, changed data settings, and what retention purged; newest first.
    Only full-access keys may read it."""

    model = AuditLogEntry
    output_serializer_class = AuditLogEntrySerializer
    permission_classes = [*TenantViewSet.permission_classes, FullAccessKeyPermission]
    filterset_class = AuditLogFilter

    def access_object(self, organization: Organization, pk: int) -> AuditLogEntry:
        return selectors.access_audit_log_entry(organization=organization, entry_id=pk)
