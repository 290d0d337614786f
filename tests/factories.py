"""Factories for tenant-owned objects. Each takes the organization it creates rows in.

``FACTORIES`` maps every tenant-owned model to its factory; the isolation tests walk the
model registry and fail for a model that has none, so a new model cannot slip past them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.db import models

from agents.models import Agent, Credential, Tool
from agents.services import agent_create, credential_create, tool_create
from calls.models import PhoneNumber
from calls.services import phone_number_create
from tenants.models import ApiKey, Membership, Organization, Role
from tenants.services import IssuedApiKey, api_key_create, membership_create, organization_create

_seq = itertools.count(1)


def make_organization(name: str | None = None) -> Organization:
    n = next(_seq)
    return organization_create(name=name or f"Org {n}", slug=f"org-{n}")


def make_api_key(organization: Organization, name: str = "") -> IssuedApiKey:
    return api_key_create(organization=organization, name=name)


def make_user(email: str | None = None) -> Any:
    email = email or f"user{next(_seq)}@example.test"
    return get_user_model().objects.create_user(username=email, email=email, password="pw-x1!")


def make_membership(organization: Organization, role: Role = Role.MEMBER) -> Membership:
    return membership_create(organization=organization, user=make_user(), role=role)


def make_credential(organization: Organization, provider: str = "openai") -> Credential:
    if provider == "twilio":
        return credential_create(
            organization=organization,
            name=f"twilio {next(_seq)}",
            provider="twilio",
            account_sid="AC" + "1" * 32,
            auth_token="twilio-token-" + "t" * 20,
        )
    return credential_create(
        organization=organization,
        name=f"{provider} {next(_seq)}",
        provider=provider,
        api_key=f"sk-{provider}-secret-{next(_seq):06d}",
    )


def make_tool(organization: Organization, **data: Any) -> Tool:
    fields: dict[str, Any] = {"name": f"tool_{next(_seq)}", "kind": "end_call"}
    fields.update(data)
    return tool_create(organization=organization, data=fields)


def make_agent(organization: Organization, **data: Any) -> Agent:
    fields: dict[str, Any] = {
        "name": f"Agent {next(_seq)}",
        "stt": {"provider": "pocketsphinx", "model": "", "language": "en-US"},
        "llm": {"provider": "scripted", "model": "", "temperature": 0.7, "max_tokens": 512},
        "tts": {"provider": "espeak", "voice": "", "model": "", "speed": 1.0, "language": "en"},
    }
    fields.update(data)
    return agent_create(organization=organization, data=fields)


def make_phone_number(organization: Organization, **data: Any) -> PhoneNumber:
    fields: dict[str, Any] = {
        "number": f"+1415555{next(_seq) % 10000:04d}",
        "credential": make_credential(organization, "twilio"),
        "agent": make_agent(organization),
    }
    fields.update(data)
    return phone_number_create(organization=organization, data=fields)


FACTORIES: dict[type[models.Model], Callable[[Organization], models.Model]] = {
    ApiKey: lambda org: make_api_key(org).api_key,
    Membership: make_membership,
    Credential: make_credential,
    Tool: make_tool,
    Agent: make_agent,
    PhoneNumber: make_phone_number,
}
