"""Writes for agents, tools and credentials. Inputs arrive validated (agents/serializers.py);
rules that need the database (uniqueness, ownership) are enforced here."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from agents.models import Agent, Credential, CredentialProvider, Tool
from tenants.models import Organization
from voice.providers import registry


def _hint(secret: str) -> str:
    return secret[-4:] if len(secret) >= 8 else ""


def _assert_same_org(organization: Organization, *objs: Any) -> None:
    # Serializers already resolve ids within the organization; this keeps services safe
    # when called from anywhere else (commands, tasks).
    for obj in objs:
        if obj is not None and obj.organization_id != organization.pk:
            raise ValidationError("Referenced object belongs to another organization.")


@transaction.atomic
def credential_create(
    *,
    organization: Organization,
    name: str,
    provider: str,
    api_key: str = "",
    account_sid: str = "",
    auth_token: str = "",
    base_url: str = "",
) -> Credential:
    credential = Credential(
        organization=organization,
        name=name,
        provider=provider,
        api_key=api_key,
        account_sid=account_sid,
        auth_token=auth_token,
        base_url=base_url,
        hint=_hint(auth_token if provider == CredentialProvider.TWILIO else api_key),
    )
    credential.save()
    return credential


@transaction.atomic
def credential_update(*, credential: Credential, data: dict[str, Any]) -> Credential:
    for field in ("name", "api_key", "account_sid", "auth_token", "base_url"):
        if field in data:
            setattr(credential, field, data[field])
    main = credential.auth_token if credential.provider == "twilio" else credential.api_key
    credential.hint = _hint(main)
    credential.save()
    return credential


def credential_delete(*, credential: Credential) -> None:
    # RESTRICT on agents and phone numbers turns "still in use" into a 409, while still
    # letting an organization be deleted with everything in it.
    credential.delete()


@transaction.atomic
def tool_create(*, organization: Organization, data: dict[str, Any]) -> Tool:
    tool = Tool(organization=organization, **data)
    _tool_save(tool)
    return tool


@transaction.atomic
def tool_update(*, tool: Tool, data: dict[str, Any]) -> Tool:
    for field, value in data.items():
        setattr(tool, field, value)
    _tool_save(tool)
    return tool


def _tool_save(tool: Tool) -> None:
    clash = Tool.objects.for_org(tool.organization).filter(name=tool.name).exclude(pk=tool.pk)
    if clash.exists():
        raise ValidationError({"name": "A tool with this name already exists."})
    try:
        with transaction.atomic():
            tool.save()
    except IntegrityError as exc:  # lost a race with a concurrent create
        raise ValidationError({"name": "A tool with this name already exists."}) from exc


def tool_delete(*, tool: Tool) -> None:
    tool.delete()


def _check_agent_refs(organization: Organization, agent: Agent, tools: list[Tool] | None) -> None:
    _assert_same_org(organization, agent.stt_credential, agent.llm_credential, agent.tts_credential)
    if tools is not None:
        _assert_same_org(organization, *tools)
    errors: dict[str, str] = {}
    for stage in registry.Kind:
        credential = getattr(agent, f"{stage}_credential")
        if credential is None:
            continue
        provider = getattr(agent, stage).get("provider")
        wanted = registry.spec(stage, provider).credential
        if not wanted:
            errors[f"{stage}_credential"] = f"The {provider} provider takes no credential."
        elif credential.provider != wanted:
            errors[f"{stage}_credential"] = f"Expected a {wanted} credential."
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def agent_create(*, organization: Organization, data: dict[str, Any]) -> Agent:
    data = dict(data)
    tools = data.pop("tools", None)
    agent = Agent(organization=organization, **data)
    _check_agent_refs(organization, agent, tools)
    agent.save()
    if tools:
        agent.tools.set(tools)
    return agent


@transaction.atomic
def agent_update(*, agent: Agent, data: dict[str, Any]) -> Agent:
    data = dict(data)
    tools = data.pop("tools", None)
    for field, value in data.items():
        setattr(agent, field, value)
    _check_agent_refs(agent.organization, agent, tools)
    agent.save()
    if tools is not None:
        agent.tools.set(tools)
    return agent


def agent_delete(*, agent: Agent) -> None:
    agent.delete()


@transaction.atomic
def agent_duplicate(*, agent: Agent, name: str) -> Agent:
    """A copy of ``agent`` under ``name``: every setting, its tools, credentials and
    webhook secret (still encrypted). Phone numbers stay with the original."""
    tools = list(agent.tools.all())
    copy = Agent.objects.for_org(agent.organization).get(pk=agent.pk)
    copy.pk = None
    copy.id = None
    copy._state.adding = True
    copy.name = name
    copy.save()
    copy.tools.set(tools)
    return copy
