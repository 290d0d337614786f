"""Platform staff use the Django admin across tenants, despite the scoped managers."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from tenants.scoping import tenant_models
from tests.factories import FACTORIES, make_organization, make_user

SECRETS = ("sk-openai-secret", "twilio-token-", "s3cret-webhook")


@pytest.fixture
def staff_client(db: Any) -> Client:
    user = make_user()
    user.is_staff = user.is_superuser = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


def test_every_model_is_registered() -> None:
    for model in tenant_models():
        assert admin.site.is_registered(model), model


@pytest.mark.parametrize("model", tenant_models(), ids=lambda m: m._meta.label)
def test_changelist_and_change_pages_work_across_tenants(model: Any, staff_client: Client) -> None:
    objs = [FACTORIES[model](make_organization()) for _ in range(2)]
    info = (model._meta.app_label, model._meta.model_name)
    listing = staff_client.get(reverse("admin:{}_{}_changelist".format(*info)))
    assert listing.status_code == 200
    for obj in objs:
        change_url = reverse("admin:{}_{}_change".format(*info), args=[obj.pk])
        assert change_url in listing.content.decode()
    for obj in objs:
        page = staff_client.get(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))
        assert page.status_code == 200
        text = page.content.decode()
        assert not any(secret in text for secret in SECRETS)
        assert (
            staff_client.get(reverse("admin:{}_{}_delete".format(*info), args=[obj.pk])).status_code
            == 200
        )


def test_agent_can_be_edited_in_the_admin(staff_client: Client) -> None:
    from agents.models import Agent

    agent = FACTORIES[Agent](make_organization())
    url = reverse("admin:agents_agent_change", args=[agent.pk])
    page = staff_client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {
        name: form[name].value() if form[name].value() is not None else "" for name in form.fields
    }
    data.update(name="Renamed by staff")
    for name in (
        "stt",
        "llm",
        "tts",
        "turn",
        "interruption",
        "idle",
        "analysis",
        "end_call_phrases",
    ):
        data[name] = form[name].value()
    data["tools"] = []
    response = staff_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Agent.objects.dangerously_unscoped().get(pk=agent.pk).name == "Renamed by staff"


def test_staff_can_delete_an_organization_with_everything_in_it(staff_client: Client) -> None:
    from tenants.models import Organization

    org = make_organization()
    for factory in FACTORIES.values():
        factory(org)
    url = reverse("admin:tenants_organization_delete", args=[org.pk])
    assert staff_client.get(url).status_code == 200
    assert staff_client.post(url, {"post": "yes"}).status_code == 302
    assert not Organization.objects.filter(pk=org.pk).exists()


def test_admin_holds_agent_settings_to_the_api_rules(staff_client: Client) -> None:
    from agents.models import Agent

    agent = FACTORIES[Agent](make_organization())
    url = reverse("admin:agents_agent_change", args=[agent.pk])
    form = staff_client.get(url).context["adminform"].form
    data = {name: form[name].value() or "" for name in form.fields}
    data.update(llm='{"provider": "nope"}', tools=[])
    response = staff_client.post(url, data)
    assert response.status_code == 200  # the form again, with errors
    assert "llm" in response.context["adminform"].form.errors
    assert Agent.objects.dangerously_unscoped().get(pk=agent.pk).llm["provider"] == "scripted"


def test_admin_refuses_links_across_organizations(staff_client: Client) -> None:
    from agents.models import Agent
    from calls.models import PhoneNumber
    from tests.factories import make_agent, make_phone_number, make_tool

    mine, theirs = make_organization(), make_organization()
    agent = make_agent(mine)
    url = reverse("admin:agents_agent_change", args=[agent.pk])
    form = staff_client.get(url).context["adminform"].form
    data = {name: form[name].value() or "" for name in form.fields}
    data["tools"] = [make_tool(theirs).pk]
    response = staff_client.post(url, data)
    assert "tools" in response.context["adminform"].form.errors
    assert not Agent.objects.dangerously_unscoped().get(pk=agent.pk).tools.exists()

    number = make_phone_number(mine)
    url = reverse("admin:calls_phonenumber_change", args=[number.pk])
    form = staff_client.get(url).context["adminform"].form
    data = {name: form[name].value() or "" for name in form.fields}
    data["agent"] = make_agent(theirs).pk
    response = staff_client.post(url, data)
    assert "agent" in response.context["adminform"].form.errors
    assert PhoneNumber.objects.dangerously_unscoped().get(pk=number.pk).agent_id == number.agent_id
