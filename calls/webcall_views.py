"""Dashboard pages for web calls and call control (docs/web-calls.md).

- ``/agents/<id>/talk/``: GET, the "Talk to this agent" panel on its own page (the agent
  page includes the same panel); POST, start a web call and answer with its ticket as
  JSON for static/calls/talk.js. Members and above (a call costs money); viewers read.
- ``/agents/<id>/widget/``: the agent's embeddable-widget keys and snippets; admins
  create (listing the allowed origins) and disable them.
- ``/calls/<id>/control/``: GET, the call's control actions (its timeline of them);
  POST, one action (say, inject, mute_agent, unmute_agent, transfer, end) through the
  same service as the API, then back to the call's page. Members and above act.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from agents.selectors import access_agent
from calls import selectors
from calls.control import ControlError, call_control
from calls.models import WidgetKey
from calls.webcalls import WebCallRefused, web_call_create
from calls.widget import widget_key_create, widget_key_disable, widget_snippet
from tenants.models import Role
from tenants.web import OrgRequest, org_required


@org_required(min_role=Role.VIEWER, write_role=Role.MEMBER)
def agent_talk(request: OrgRequest, agent_id: int) -> HttpResponse:
    agent = access_agent(organization=request.organization, agent_id=agent_id)
    if request.method != "POST":
        return render(request, "calls/agent_talk.html", {"agent": agent})
    try:
        ticket = web_call_create(agent=agent, source="dashboard")
    except WebCallRefused as exc:
        return JsonResponse({"error": {"code": "refused", "message": str(exc)}}, status=409)
    return JsonResponse(
        {
            "call": ticket.call.pk,
            "call_url": reverse("calls:call-detail", kwargs={"call_id": ticket.call.pk}),
            "ws_path": ticket.ws_path,
            "sample_rate": ticket.sample_rate,
            "expires_in_s": ticket.expires_in_s,
        },
        status=201,
    )


@org_required(min_role=Role.VIEWER, write_role=Role.MEMBER)
def call_control_page(request: OrgRequest, call_id: int) -> HttpResponse:
    call = selectors.access_call(organization=request.organization, call_id=call_id)
    if request.method != "POST":
        return render(request, "calls/call_control.html", {"call": call})
    action = request.POST.get("action", "")
    params = {k: request.POST[k] for k in ("text", "to", "detail") if request.POST.get(k)}
    try:
        call_control(call=call, action=action, params=params, actor=f"user:{request.user}")
    except ControlError as exc:
        messages.error(request, exc.message)
        status = 409 if exc.status == 409 else 400
        return render(request, "calls/call_control.html", {"call": call}, status=status)
    messages.success(request, f"Sent “{action}” to the call.")
    return redirect("calls:call-detail", call_id=call.pk)


@org_required(min_role=Role.VIEWER, write_role=Role.ADMIN)
def agent_widget(request: OrgRequest, agent_id: int) -> HttpResponse:
    """The agent's widget keys and their one-line snippets; admins create and disable
    keys (a key lets any listed site start calls that the organization pays for)."""
    organization = request.organization
    agent = access_agent(organization=organization, agent_id=agent_id)
    keys = WidgetKey.objects.for_org(organization).filter(agent=agent)
    error, status = "", 200
    if request.method == "POST":
        if request.POST.get("action") == "disable":
            found = keys.filter(pk=request.POST.get("key_id") or 0).first()
            if found is not None:
                widget_key_disable(widget_key=found)
                messages.success(request, "The widget key is disabled.")
            return redirect("calls:agent-widget", agent_id=agent.pk)
        origins = request.POST.get("allowed_origins", "").split()
        try:
            widget_key_create(agent=agent, allowed_origins=origins)
        except ValidationError as exc:
            error, status = " ".join(exc.messages), 400
        else:
            messages.success(request, "Widget key created: paste its snippet into your page.")
            return redirect("calls:agent-widget", agent_id=agent.pk)
    rows = [(key, widget_snippet(widget_key=key)) for key in keys]
    context = {
        "agent": agent,
        "rows": rows,
        "error": error,
        "origins": request.POST.get("allowed_origins", ""),
    }
    return render(request, "calls/agent_widget.html", context, status=status)
