"""Dashboard pages of the calls app: overview, calls, call detail, analytics.

Thin: every number comes from calls.selectors / calls.analytics, the same functions the
API uses, and single calls from ``access_call`` (another tenant's call is a 404). Any
member, viewers included, may read all of these.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from calls import analytics, recordings, retention, selectors
from calls.charts import Series, column_chart
from calls.forms import PERIOD_LABELS, AnalyticsForm, CallFilterForm
from calls.waterfall import STAGES as WATERFALL_STAGES
from calls.waterfall import waterfall_layout
from tenants.models import Role
from tenants.services import Actor
from tenants.web import OrgRequest, org_required

CALLS_PER_PAGE = 25
LIVE_FRAGMENT = "live-calls"  # the id of the in-progress panel that htmx refreshes
P50_COLOUR, P95_COLOUR, CALLS_COLOUR = "#1d70b8", "#003078", "#00703c"
STAGE_LABELS = {f"{key}_ms": label for key, label, *_ in WATERFALL_STAGES} | {
    "voice_to_voice_ms": "Voice-to-voice"
}


def _live_panel(request: OrgRequest) -> HttpResponse | None:
    """The in-progress panel alone, when live.js asks for it (after (re)connecting)."""
    if request.htmx and request.htmx.target == LIVE_FRAGMENT:
        calls = analytics.calls_in_progress(organization=request.organization)
        return render(request, "calls/_live_calls.html", {"live_calls": calls})
    return None


@org_required
def overview(request: OrgRequest) -> HttpResponse:
    fragment = _live_panel(request)
    if fragment is not None:
        return fragment
    view = analytics.overview(organization=request.organization)
    return render(
        request, "calls/overview.html", {"overview": view, "live_calls": view.in_progress}
    )


@org_required
def call_list(request: OrgRequest) -> HttpResponse:
    fragment = _live_panel(request)
    if fragment is not None:
        return fragment
    organization = request.organization
    form = CallFilterForm(request.GET or None, organization=organization)
    filters: dict[str, Any] = {}
    if form.is_bound:
        # An invalid field is reported beside it; the valid ones still filter.
        form.is_valid()
        filters = form.search_filters()
    calls = selectors.call_search(organization=organization, **filters)
    page = Paginator(calls, CALLS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "calls/call_list.html",
        {
            "form": form,
            "page_obj": page,
            "query": query.urlencode(),
            "filtered": any(v not in (None, "") for v in filters.values()),
            "live_calls": analytics.calls_in_progress(organization=organization),
        },
    )


@org_required
def call_detail(request: OrgRequest, call_id: int) -> HttpResponse:
    call = selectors.access_call(organization=request.organization, call_id=call_id)
    turns = list(call.turns.all())
    return render(
        request,
        "calls/call_detail.html",
        {
            "call": call,
            "transcript": list(call.transcript.all()),
            "tool_calls": list(call.tool_invocations.all()),
            "turns": turns,
            "stage_keys": [key for key in STAGE_LABELS],
            "stage_labels": STAGE_LABELS,
            "waterfall": waterfall_layout([_timeline(t) for t in turns]),
        },
    )


def _timeline(turn: Any) -> dict[str, Any]:
    # The stored timeline has the raw marks and derived stages; the row's own columns
    # are the source of truth for what identifies it.
    return {**turn.timeline, "turn_index": turn.turn_index, "kind": turn.kind}


@org_required
def analytics_page(request: OrgRequest) -> HttpResponse:
    organization = request.organization
    form = AnalyticsForm(request.GET or None, organization=organization)
    valid = form.is_valid() if form.is_bound else False
    data = form.cleaned_data if valid else {}
    period = data.get("period") or analytics.DEFAULT_PERIOD
    agent = data.get("agent")
    agent_id = agent.pk if agent else None
    window = analytics.analytics_window(period=period)
    latency = analytics.latency_summary(organization=organization, window=window, agent_id=agent_id)
    totals = analytics.call_totals(organization=organization, window=window, agent_id=agent_id)
    by_day = analytics.latency_by_day(organization=organization, window=window, agent_id=agent_id)
    calls_by_day = analytics.calls_by_day(
        organization=organization, window=window, agent_id=agent_id
    )
    days = [d.day.strftime("%b %-d") for d in by_day]
    label_every = max(1, len(days) // 10)
    stage_keys = list(analytics.STAGES)
    return render(
        request,
        "calls/analytics.html",
        {
            "form": form,
            "period_label": PERIOD_LABELS[period],
            "agent": agent,
            "latency": latency,
            "stage_rows": [(STAGE_LABELS[k], latency.stages[k]) for k in stage_keys],
            "totals": totals,
            "by_agent": analytics.latency_by_agent(organization=organization, window=window),
            "stage_chart": column_chart(
                title="p50 and p95 of each stage",
                categories=[STAGE_LABELS[k] for k in stage_keys],
                series=[
                    Series("p50", P50_COLOUR, [latency.stages[k].p50 for k in stage_keys]),
                    Series("p95", P95_COLOUR, [latency.stages[k].p95 for k in stage_keys]),
                ],
                unit="ms",
            ),
            "v2v_chart": column_chart(
                title="Voice-to-voice per day",
                categories=days,
                series=[
                    Series("p50", P50_COLOUR, [d.voice_to_voice.p50 for d in by_day]),
                    Series("p95", P95_COLOUR, [d.voice_to_voice.p95 for d in by_day]),
                ],
                unit="ms",
                label_every=label_every,
            ),
            "calls_chart": column_chart(
                title="Calls per day",
                categories=days,
                series=[Series("", CALLS_COLOUR, [d.calls for d in calls_by_day])],
                unit="calls",
                label_every=label_every,
            ),
        },
    )


@org_required(min_role=Role.ADMIN)
def call_delete(request: OrgRequest, call_id: int) -> HttpResponse:
    call = selectors.access_call(organization=request.organization, call_id=call_id)
    error = ""
    if request.method == "POST":
        try:
            retention.call_delete(call=call, actor=Actor(user=request.user))
        except retention.CallDeleteFailed as exc:
            error = str(exc)
        else:
            messages.success(request, f"Call {call_id} deleted.")
            return redirect("calls:call-list")
    context = {
        "title": f"Delete call {call.pk}?",
        "body": "Its transcript, latency metrics, tool calls, analysis and recording are "
        "deleted at once, for good. The audit log records who deleted it; what it used "
        "stays in billing.",
        "button": "Delete call",
        "cancel_url": reverse("calls:call-detail", kwargs={"call_id": call.pk}),
        "error": error,
    }
    return render(request, "tenants/confirm.html", context, status=503 if error else 200)


@org_required(min_role=Role.ADMIN, write_role=Role.ADMIN)
def call_recording_delete(request: OrgRequest, call_id: int) -> HttpResponse:
    """Delete a call's recording (admins): a confirmation page, then the POST."""
    call = selectors.access_call(organization=request.organization, call_id=call_id)
    if request.method == "POST":
        if recordings.call_recording_delete(call=call):
            messages.success(request, f"The recording of call {call.pk} was deleted.")
        return redirect("calls:call-detail", call_id=call.pk)
    return render(request, "calls/call_recording_delete.html", {"call": call})
