"""Platform staff use the Django admin across tenants, despite the scoped managers."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from tenants.scoping import tenant_models
from tests.factories import FACTORIES, make_organization, make_tool, make_user

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


# --- every admin form: no secrets shown, and saving it unchanged works --------------------


class _FormFields(HTMLParser):
    """The values a browser would submit for the admin's main form (``*_form``)."""

    def __init__(self) -> None:
        super().__init__()
        self.data: list[tuple[str, str]] = []
        self._in_form = False
        self._select: str | None = None
        self._textarea: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("id", "").endswith("_form"):
            self._in_form = True
        if not self._in_form:
            return
        name = a.get("name", "")
        if tag == "input" and name and "disabled" not in a:
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind == "submit" and name != "_save":
                return
            self.data.append((name, a.get("value", "on" if kind == "checkbox" else "")))
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and "selected" in a:
            self.data.append((self._select, a.get("value", "")))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            text = "".join(self._text)
            self.data.append((self._textarea, text[1:] if text.startswith("\n") else text))
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self._text.append(data)


def _form_data(html: str) -> dict[str, list[str]]:
    parser = _FormFields()
    parser.feed(html)
    data: dict[str, list[str]] = {}
    for name, value in parser.data:
        data.setdefault(name, []).append(value)
    return data


HEADER_SECRET = "Bearer s3cret-tool-header"


def _objects(model: Any) -> list[Any]:
    from django.contrib.auth.models import Group, User

    from agents.models import Tool
    from tenants.models import Organization

    org = make_organization()
    if model is Organization:
        return [org]
    if model is User:
        return [make_user()]
    if model is Group:
        return [Group.objects.create(name=f"group {org.pk}")]
    if model._meta.app_label == "axes":  # django-axes' login records (read-only admin)
        names = {f.name for f in model._meta.fields}
        values = {
            "user_agent": "ua",
            "ip_address": "192.0.2.1",
            "username": "someone",
            "http_accept": "*/*",
            "path_info": "/admin/login/",
            "get_data": "",
            "post_data": "username=someone&password=********",
            "failures_since_start": 1,
        }
        return [model.objects.create(**{k: v for k, v in values.items() if k in names})]
    if model._meta.label == "billing.Plan":  # the operator's, not a tenant's
        from tests.factories import make_plan

        return [make_plan(features=["analytics"])]
    if model._meta.label == "billing.StripeEvent":
        return [model.objects.create(event_id=f"evt_{org.pk}", type="invoice.paid")]
    if model is Tool:
        return [
            make_tool(
                org,
                kind="http",
                url="https://tools.example.test/x",
                headers={"Authorization": HEADER_SECRET},
            ),
            make_tool(org),
        ]
    return [FACTORIES[model](org)]


ALL_SECRETS = (*SECRETS, HEADER_SECRET, "s3cret-tool-header")


@pytest.mark.parametrize("model", list(admin.site._registry), ids=lambda m: m._meta.label)
def test_every_admin_form_hides_secrets_and_saves_unchanged(
    model: Any, staff_client: Client
) -> None:
    info = (model._meta.app_label, model._meta.model_name)
    for obj in _objects(model):
        url = reverse("admin:{}_{}_change".format(*info), args=[obj.pk])
        page = staff_client.get(url)
        assert page.status_code == 200
        html = page.content.decode()
        assert not [s for s in ALL_SECRETS if s in html], model
        data = _form_data(html)
        if "_save" not in data:  # a view-only admin (call records)
            assert staff_client.post(url, {}).status_code == 403
            continue
        response = staff_client.post(url, data)
        errors = response.context and response.context["adminform"].form.errors
        assert response.status_code == 302, errors
    add_url = reverse("admin:{}_{}_add".format(*info))
    page = staff_client.get(add_url)
    if page.status_code == 403:
        return
    assert page.status_code == 200
    assert not [s for s in ALL_SECRETS if s in page.content.decode()]
    # unchanged = empty: a clear form error (or a save), never a server error
    assert staff_client.post(add_url, _form_data(page.content.decode())).status_code in (200, 302)


def test_a_tool_saved_in_the_admin_keeps_its_secret_headers(staff_client: Client) -> None:
    from agents.models import Tool

    tool = make_tool(
        make_organization(),
        kind="http",
        url="https://tools.example.test/x",
        headers={"Authorization": HEADER_SECRET},
    )
    url = reverse("admin:agents_tool_change", args=[tool.pk])
    page = staff_client.get(url).content.decode()
    assert "Authorization" in page and HEADER_SECRET not in page
    data = _form_data(page)
    data["description"] = ["changed by staff"]
    assert staff_client.post(url, data).status_code == 302
    tool = Tool.objects.dangerously_unscoped().get(pk=tool.pk)
    assert tool.description == "changed by staff"
    assert tool.headers == {"Authorization": HEADER_SECRET}


def test_the_admin_refuses_a_private_tool_url(staff_client: Client) -> None:
    tool = make_tool(make_organization(), kind="http", url="https://tools.example.test/x")
    url = reverse("admin:agents_tool_change", args=[tool.pk])
    data = _form_data(staff_client.get(url).content.decode())
    data["url"] = ["http://169.254.169.254/latest/meta-data/"]
    response = staff_client.post(url, data)
    assert response.status_code == 200
    assert "url" in response.context["adminform"].form.errors
