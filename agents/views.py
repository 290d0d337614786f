"""Dashboard pages for agents, tools and credentials.

Thin: each page fetches through the selectors the API uses (so another organization's
object is a 404), and writes through a form over the API's own serializer and service
(agents/forms.py, glassbox/pageforms.py). Viewers read; members and above write (the gate
in tenants/web.py answers a viewer's POST with 403).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.db.models import Count, QuerySet, RestrictedError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from agents import selectors, services
from agents.filters import AgentFilter, CredentialFilter, ToolFilter
from agents.forms import (
    STAGES,
    AgentForm,
    CredentialForm,
    ToolForm,
    agent_form,
    credential_form,
    tool_form,
)
from agents.models import Agent
from agents.serializers import AgentInputSerializer
from glassbox.api.exceptions import Conflict
from glassbox.pageforms import FormField, PageForm
from tenants.models import Role
from tenants.web import OrgRequest, org_required

# A POST carrying this field redraws the form for a changed choice (a provider, a tool
# kind) without saving: htmx sends it when the choice changes and swaps in the part of the
# form it returns; without JavaScript a button sends it and the whole page comes back.
REFRESH = "_refresh"
PAGE_SIZE = 25
# The words the API uses when a delete would break a reference (a 409).
IN_USE = str(Conflict("This object is still in use by other objects; detach them first.").detail)


def page_of(request: HttpRequest, queryset: QuerySet[Any]) -> Page[Any]:
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


def _refresh(request: HttpRequest) -> str:
    return request.POST.get(REFRESH, "") if request.method == "POST" else ""


# --- agents --------------------------------------------------------------------------------


@org_required
def agent_list(request: OrgRequest) -> HttpResponse:
    # A GROUP BY drops the model's default ordering; pages need a stable one.
    agents = (
        selectors.agent_list(organization=request.organization)
        .annotate(number_count=Count("phone_numbers", distinct=True))
        .order_by("-created", "-id")
    )
    filtered = AgentFilter(request.GET, queryset=agents)
    return render(
        request,
        "agents/agent_list.html",
        {"page": page_of(request, filtered.qs), "name": request.GET.get("name", "")},
    )


def _agent_page(
    request: OrgRequest, form: AgentForm, agent: Agent | None, status: int = 200
) -> HttpResponse:
    refresh = _refresh(request)
    if refresh in STAGES and request.htmx:
        return render(
            request,
            "agents/_agent_stage.html",
            {
                "form": form,
                "stage": refresh,
                "fields": form.bound_fields(form.stage_fields(refresh)),
            },
        )
    return render(
        request,
        "agents/agent_form.html",
        {"form": form, "agent": agent, "layout": form.layout()},
        status=status,
    )


@org_required(min_role=Role.MEMBER)
def agent_create(request: OrgRequest) -> HttpResponse:
    organization = request.organization
    if request.method != "POST":
        return _agent_page(request, agent_form(organization=organization), None)
    form = agent_form(organization=organization, data=request.POST)
    if _refresh(request):
        return _agent_page(request, form, None)
    agent = form.save(lambda data: services.agent_create(organization=organization, data=data))
    if agent is None:
        return _agent_page(request, form, None, status=400)
    messages.success(request, f"Agent “{agent.name}” created.")
    return redirect("agents:agent-detail", agent_id=agent.pk)


@org_required
def agent_detail(request: OrgRequest, agent_id: int) -> HttpResponse:
    """The agent's settings: a form for members and above, read-only for viewers."""
    organization = request.organization
    agent = selectors.access_agent(organization=organization, agent_id=agent_id)
    if request.method != "POST":
        return _agent_page(request, agent_form(organization=organization, agent=agent), agent)
    form = agent_form(organization=organization, agent=agent, data=request.POST)
    if _refresh(request):
        return _agent_page(request, form, agent)
    saved = form.save(lambda data: services.agent_update(agent=agent, data=data))
    if saved is None:
        return _agent_page(request, form, agent, status=400)
    messages.success(request, f"Agent “{saved.name}” saved.")
    return redirect("agents:agent-detail", agent_id=saved.pk)


@org_required(min_role=Role.MEMBER)
def agent_duplicate(request: OrgRequest, agent_id: int) -> HttpResponse:
    organization = request.organization
    agent = selectors.access_agent(organization=organization, agent_id=agent_id)
    # The copy's name is checked by the API's own name field (a partial update's rules);
    # a POST without one is a blank name, not "no change".
    data = None
    if request.method == "POST":
        data = request.POST.copy()
        data.setdefault("name", "")
    form = PageForm(
        serializer_class=AgentInputSerializer,
        fields=[FormField("name", "Name of the copy")],
        context={"organization": organization},
        instance=agent,
        initial={"name": f"Copy of {agent.name}"[:200]},
        data=data,
    )
    status = 200
    if request.method == "POST":
        copy = form.save(lambda data: services.agent_duplicate(agent=agent, name=data["name"]))
        if copy is not None:
            messages.success(request, f"Agent “{agent.name}” duplicated as “{copy.name}”.")
            return redirect("agents:agent-detail", agent_id=copy.pk)
        status = 400
    return render(
        request, "agents/agent_duplicate.html", {"form": form, "agent": agent}, status=status
    )


@org_required(min_role=Role.MEMBER)
def agent_delete(request: OrgRequest, agent_id: int) -> HttpResponse:
    agent = selectors.access_agent(organization=request.organization, agent_id=agent_id)
    if request.method == "POST":
        services.agent_delete(agent=agent)
        messages.success(request, f"Agent “{agent.name}” deleted.")
        return redirect("agents:agent-list")
    numbers = selectors.agent_phone_numbers(agent=agent)
    return render(request, "agents/agent_delete.html", {"agent": agent, "numbers": numbers})


# --- tools ---------------------------------------------------------------------------------


@org_required
def tool_list(request: OrgRequest) -> HttpResponse:
    tools = (
        selectors.tool_list(organization=request.organization)
        .annotate(agent_count=Count("agents", distinct=True))
        .order_by("-created", "-id")
    )
    filtered = ToolFilter(request.GET, queryset=tools)
    return render(
        request,
        "agents/tool_list.html",
        {"page": page_of(request, filtered.qs), "filter": filtered.form},
    )


def _tool_page(request: OrgRequest, form: ToolForm, status: int = 200) -> HttpResponse:
    template = "agents/tool_form.html"
    if _refresh(request) == "kind" and request.htmx:
        template = "agents/_tool_kind.html"
    return render(request, template, {"form": form, "tool": form.instance}, status=status)


@org_required(min_role=Role.MEMBER)
def tool_create(request: OrgRequest) -> HttpResponse:
    organization = request.organization
    if request.method != "POST":
        return _tool_page(request, tool_form(organization=organization))
    form = tool_form(organization=organization, data=request.POST)
    if _refresh(request):
        return _tool_page(request, form)
    tool = form.save(lambda data: services.tool_create(organization=organization, data=data))
    if tool is None:
        return _tool_page(request, form, status=400)
    messages.success(request, f"Tool “{tool.name}” created.")
    return redirect("agents:tool-detail", tool_id=tool.pk)


@org_required
def tool_detail(request: OrgRequest, tool_id: int) -> HttpResponse:
    organization = request.organization
    tool = selectors.access_tool(organization=organization, tool_id=tool_id)
    if request.method != "POST":
        return _tool_page(request, tool_form(organization=organization, tool=tool))
    form = tool_form(organization=organization, tool=tool, data=request.POST)
    if _refresh(request):
        return _tool_page(request, form)
    saved = form.save(lambda data: services.tool_update(tool=tool, data=data))
    if saved is None:
        return _tool_page(request, form, status=400)
    messages.success(request, f"Tool “{saved.name}” saved.")
    return redirect("agents:tool-detail", tool_id=saved.pk)


@org_required(min_role=Role.MEMBER)
def tool_delete(request: OrgRequest, tool_id: int) -> HttpResponse:
    tool = selectors.access_tool(organization=request.organization, tool_id=tool_id)
    if request.method == "POST":
        services.tool_delete(tool=tool)
        messages.success(request, f"Tool “{tool.name}” deleted.")
        return redirect("agents:tool-list")
    agents = selectors.tool_agents(tool=tool)
    return render(request, "agents/tool_delete.html", {"tool": tool, "agents": agents})


# --- credentials ---------------------------------------------------------------------------


@org_required
def credential_list(request: OrgRequest) -> HttpResponse:
    credentials = selectors.credential_list(organization=request.organization)
    filtered = CredentialFilter(request.GET, queryset=credentials)
    return render(
        request,
        "agents/credential_list.html",
        {"page": page_of(request, filtered.qs), "filter": filtered.form},
    )


def _credential_page(request: OrgRequest, form: CredentialForm, status: int = 200) -> HttpResponse:
    template = "agents/credential_form.html"
    if _refresh(request) == "provider" and request.htmx:
        template = "agents/_credential_provider.html"
    return render(request, template, {"form": form, "credential": form.instance}, status=status)


@org_required(min_role=Role.MEMBER)
def credential_create(request: OrgRequest) -> HttpResponse:
    organization = request.organization
    if request.method != "POST":
        return _credential_page(request, credential_form(organization=organization))
    form = credential_form(organization=organization, data=request.POST)
    if _refresh(request):
        return _credential_page(request, form)
    credential = form.save(
        lambda data: services.credential_create(organization=organization, **data)
    )
    if credential is None:
        return _credential_page(request, form, status=400)
    messages.success(request, f"Credential “{credential.name}” saved.")
    return redirect("agents:credential-list")


@org_required
def credential_detail(request: OrgRequest, credential_id: int) -> HttpResponse:
    organization = request.organization
    credential = selectors.access_credential(organization=organization, credential_id=credential_id)
    if request.method != "POST":
        return _credential_page(
            request, credential_form(organization=organization, credential=credential)
        )
    form = credential_form(organization=organization, credential=credential, data=request.POST)
    saved = form.save(lambda data: services.credential_update(credential=credential, data=data))
    if saved is None:
        return _credential_page(request, form, status=400)
    messages.success(request, f"Credential “{saved.name}” saved.")
    return redirect("agents:credential-list")


@org_required(min_role=Role.MEMBER)
def credential_delete(request: OrgRequest, credential_id: int) -> HttpResponse:
    credential = selectors.access_credential(
        organization=request.organization, credential_id=credential_id
    )
    error = ""
    status = 200
    if request.method == "POST":
        try:
            services.credential_delete(credential=credential)
        except RestrictedError:
            error, status = IN_USE, 409
        else:
            messages.success(request, f"Credential “{credential.name}” deleted.")
            return redirect("agents:credential-list")
    context = {
        "credential": credential,
        "agents": selectors.credential_agents(credential=credential),
        "numbers": selectors.credential_phone_numbers(credential=credential),
        "error": error,
    }
    return render(request, "agents/credential_delete.html", context, status=status)
