from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from agents import selectors, services
from agents.filters import AgentFilter, CredentialFilter, ToolFilter
from agents.models import Agent, Credential, Tool
from agents.serializers import (
    AgentInputSerializer,
    AgentOutputSerializer,
    CredentialInputSerializer,
    CredentialOutputSerializer,
    ToolInputSerializer,
    ToolOutputSerializer,
)
from calls.serializers import WebCallTicketSerializer
from calls.webcalls import WebCallRefused, web_call_create
from glassbox.api.exceptions import Conflict
from glassbox.api.views import TenantCRUDViewSet
from tenants.models import Organization


class AgentViewSet(TenantCRUDViewSet):
    """Voice agents: prompt, providers, turn-taking, interruptions, tools, webhooks."""

    model = Agent
    input_serializer_class = AgentInputSerializer
    output_serializer_class = AgentOutputSerializer
    filterset_class = AgentFilter

    def safely_get_queryset(self, queryset: Any) -> Any:
        return queryset.prefetch_related("tools")

    def access_object(self, organization: Organization, pk: int) -> Agent:
        return selectors.access_agent(organization=organization, agent_id=pk)

    def perform_create_service(self, data: dict[str, Any]) -> Agent:
        return services.agent_create(organization=self.organization, data=data)

    def perform_update_service(self, instance: Agent, data: dict[str, Any]) -> Agent:
        return services.agent_update(agent=instance, data=data)

    def perform_delete_service(self, instance: Agent) -> None:
        services.agent_delete(agent=instance)

    @extend_schema(
        request=None,
        responses={
            201: WebCallTicketSerializer,
            409: OpenApiResponse(description="Admission refused the call (a plan limit)."),
        },
        summary="Start a web call",
    )
    @action(detail=True, methods=["post"], url_path="web-calls")
    def web_calls(self, request: Request, pk: str | None = None) -> Response:
        """Start a call with this agent from a browser (or any client speaking the web-call
        protocol, docs/web-calls.md): the call is recorded (direction ``web``) and
        ``ws_url`` accepts one connection within ``expires_in_s``. 409 if admission
        refuses the call (a plan limit)."""
        agent = self.get_object()
        try:
            ticket = web_call_create(agent=agent, source="api")
        except WebCallRefused as exc:
            raise Conflict(str(exc)) from exc
        return Response(WebCallTicketSerializer(ticket).data, status=201)


class ToolViewSet(TenantCRUDViewSet):
    """Functions an agent's LLM can call: HTTP endpoints or built-in call controls."""

    model = Tool
    input_serializer_class = ToolInputSerializer
    output_serializer_class = ToolOutputSerializer
    filterset_class = ToolFilter

    def access_object(self, organization: Organization, pk: int) -> Tool:
        return selectors.access_tool(organization=organization, tool_id=pk)

    def perform_create_service(self, data: dict[str, Any]) -> Tool:
        return services.tool_create(organization=self.organization, data=data)

    def perform_update_service(self, instance: Tool, data: dict[str, Any]) -> Tool:
        return services.tool_update(tool=instance, data=data)

    def perform_delete_service(self, instance: Tool) -> None:
        services.tool_delete(tool=instance)


class CredentialViewSet(TenantCRUDViewSet):
    """Your own provider and carrier keys. Secrets are write-only and encrypted at rest."""

    model = Credential
    input_serializer_class = CredentialInputSerializer
    output_serializer_class = CredentialOutputSerializer
    filterset_class = CredentialFilter

    def access_object(self, organization: Organization, pk: int) -> Credential:
        return selectors.access_credential(organization=organization, credential_id=pk)

    def perform_create_service(self, data: dict[str, Any]) -> Credential:
        return services.credential_create(organization=self.organization, **data)

    def perform_update_service(self, instance: Credential, data: dict[str, Any]) -> Credential:
        data.pop("provider", None)  # validated as unchanged
        return services.credential_update(credential=instance, data=data)

    def perform_delete_service(self, instance: Credential) -> None:
        services.credential_delete(credential=instance)
