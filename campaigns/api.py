from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiRequest, extend_schema
from rest_framework import exceptions, parsers, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns import selectors, services
from campaigns.models import Campaign, StopListEntry
from campaigns.serializers import (
    CampaignInputSerializer,
    CampaignOutputSerializer,
    ContactOutputSerializer,
    ContactsAddedSerializer,
    ContactsAddSerializer,
    StopListInputSerializer,
    StopListOutputSerializer,
)
from glassbox.api.exceptions import PayloadTooLarge
from glassbox.api.parsers import BoundedJSONParser
from glassbox.api.views import ListRetrieveMixin, TenantViewSet
from tenants.models import Organization


class CSVParser(parsers.BaseParser):
    """``text/csv`` bodies, as text (UTF-8), capped like JSON ones."""

    media_type = "text/csv"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise exceptions.ParseError("The CSV must be UTF-8.") from exc


def _django_400(exc: DjangoValidationError) -> serializers.ValidationError:
    detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
    return serializers.ValidationError(detail)


class CampaignViewSet(ListRetrieveMixin, TenantViewSet):
    """Outbound campaigns: contacts called by an agent within a calling window, at most
    ``max_concurrency`` at once, with retries, run by Celery. ``progress`` counts
    contacts per status and per outcome."""

    model = Campaign
    input_serializer_class = CampaignInputSerializer
    output_serializer_class = CampaignOutputSerializer

    def safely_get_queryset(self, queryset: QuerySet[Campaign]) -> QuerySet[Campaign]:
        return queryset.select_related("agent").prefetch_related("from_numbers")

    def access_object(self, organization: Organization, pk: int) -> Campaign:
        return selectors.access_campaign(organization=organization, campaign_id=pk)

    def get_serializer_class(self) -> type[serializers.Serializer]:
        if self.action == "create":
            return CampaignInputSerializer
        if self.action == "contacts":
            return ContactOutputSerializer
        return CampaignOutputSerializer

    @extend_schema(request=CampaignInputSerializer, responses={201: CampaignOutputSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Start a campaign. Contacts as a JSON list (``contacts``) or CSV text
        (``contacts_csv``); more can be added later (POST .../contacts/)."""
        data = dict(self.validated_input(request))
        contacts_raw = data.pop("contacts")
        csv_text = data.pop("contacts_csv")
        try:
            if csv_text:
                contacts = services.contacts_from_csv(csv_text)
            else:
                contacts = [services.ContactInput(**c) for c in contacts_raw]
            campaign = services.campaign_create(
                organization=self.organization, data=data, contacts=contacts
            )
        except DjangoValidationError as exc:
            raise _django_400(exc) from exc
        return self.output(campaign, status.HTTP_201_CREATED)

    def _transition(self, change: Any) -> Response:
        try:
            campaign = change(campaign=self.get_object())
        except DjangoValidationError as exc:
            raise _django_400(exc) from exc
        return self.output(campaign)

    @extend_schema(request=None, responses=CampaignOutputSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str) -> Response:
        """No new calls; calls in progress finish."""
        return self._transition(services.campaign_pause)

    @extend_schema(request=None, responses=CampaignOutputSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        return self._transition(services.campaign_resume)

    @extend_schema(request=None, responses=CampaignOutputSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """For good: contacts not yet called are skipped; calls in progress finish."""
        return self._transition(services.campaign_cancel)

    @extend_schema(methods=["GET"], request=None, responses=ContactOutputSerializer(many=True))
    @extend_schema(
        methods=["POST"],
        request={
            "application/json": ContactsAddSerializer,
            "text/csv": OpenApiRequest(str),
        },
        responses={201: ContactsAddedSerializer},
    )
    @action(
        detail=True,
        methods=["get", "post"],
        parser_classes=[BoundedJSONParser, CSVParser],
    )
    def contacts(self, request: Request, pk: str) -> Response:
        """GET: the campaign's contacts, each with its status, attempts, outcome and calls.
        POST: add contacts, as JSON ``{"contacts": [...]}`` or a ``text/csv`` body (a
        'number' column, an optional 'timezone' column, every other column a variable)."""
        campaign = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(selectors.campaign_contacts(campaign=campaign))
            data = ContactOutputSerializer(page, many=True).data
            return self.get_paginated_response(data)
        try:
            if isinstance(request.data, str):
                contacts = services.contacts_from_csv(request.data)
            else:
                body = ContactsAddSerializer(data=request.data)
                body.is_valid(raise_exception=True)
                contacts = [services.ContactInput(**c) for c in body.validated_data["contacts"]]
            added = services.campaign_contacts_add(campaign=campaign, contacts=contacts)
        except DjangoValidationError as exc:
            raise _django_400(exc) from exc
        return Response({"added": added}, status=status.HTTP_201_CREATED)


class StopListViewSet(ListRetrieveMixin, TenantViewSet):
    """Numbers your organization never calls, from any campaign. Adding one skips the
    contacts with that number that are still queued."""

    model = StopListEntry
    input_serializer_class = StopListInputSerializer
    output_serializer_class = StopListOutputSerializer

    def access_object(self, organization: Organization, pk: int) -> StopListEntry:
        return selectors.access_stop_list_entry(organization=organization, entry_id=pk)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.validated_input(request)
        entry = services.stop_list_add(organization=self.organization, **data)
        return self.output(entry, status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.stop_list_remove(entry=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
