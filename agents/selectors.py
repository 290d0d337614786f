from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import Http404

from agents.models import Agent, Credential, Tool
from calls.models import PhoneNumber
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


def agent_phone_numbers(*, agent: Agent) -> QuerySet[PhoneNumber]:
    """The numbers whose calls this agent answers."""
    return PhoneNumber.objects.for_org(agent.organization).filter(agent=agent)


def tool_agents(*, tool: Tool) -> QuerySet[Agent]:
    return Agent.objects.for_org(tool.organization).filter(tools=tool)


def credential_agents(*, credential: Credential) -> QuerySet[Agent]:
    return Agent.objects.for_org(credential.organization).filter(
        Q(stt_credential=credential) | Q(llm_credential=credential) | Q(tts_credential=credential)
    )


def credential_phone_numbers(*, credential: Credential) -> QuerySet[PhoneNumber]:
    return PhoneNumber.objects.for_org(credential.organization).filter(credential=credential)
