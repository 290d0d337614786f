from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from agents.models import Agent, Credential, Tool
from tenants.models import Organization


def credential_list(*, organization: Organization) -> QuerySet[Credential]:
    return Credential.objects.for_org(organization)


def access_credential(*, organization: Organization, credential_id: int) -> Credential:
    try:
        return Credential.objects.for_org(organization).get(pk=credential_id)
    except Credential.DoesNotExist as exc:
        raise Http404("No such credential.") from exc


def tool_list(*, organization: Organization) -> QuerySet[Tool]:
    return Tool.objects.for_org(organization)


def access_tool(*, organization: Organization, tool_id: int) -> Tool:
    try:
        return Tool.objects.for_org(organization).get(pk=tool_id)
    except Tool.DoesNotExist as exc:
        raise Http404("No such tool.") from exc


def agent_list(*, organization: Organization) -> QuerySet[Agent]:
    return Agent.objects.for_org(organization).prefetch_related("tools")


def access_agent(*, organization: Organization, agent_id: int) -> Agent:
    try:
        return agent_list(organization=organization).get(pk=agent_id)
    except Agent.DoesNotExist as exc:
        raise Http404("No such agent.") from exc
