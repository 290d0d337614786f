"""The billing page, ``/billing/``: owners only (reading and writing).

One page: plan and status, usage this period per day and per agent (SVG drawn here from
the selectors' numbers), the limits and how close the organization is, and two actions
posted to the same URL: upgrade through Stripe Checkout, or open the billing portal.
In self-hosted mode (no Stripe key) the actions are absent and refused.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import stripe
from django import forms
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from billing import selectors, stripe_api
from billing.models import Plan, Subscription
from billing.services import subscription_ensure
from calls.models import PhoneNumber
from tenants.models import Organization, Role
from tenants.web import org_required

logger = logging.getLogger(__name__)

CHART_W, CHART_H, BAR_GAP = 720, 160, 2


class BillingActionForm(forms.Form):
    action = forms.ChoiceField(choices=[("checkout", "Upgrade"), ("portal", "Billing portal")])
    plan = forms.ModelChoiceField(
        queryset=Plan.objects.exclude(stripe_price_id=""), required=False, label="Plan"
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("action") == "checkout" and not data.get("plan"):
            self.add_error("plan", "Choose a plan to subscribe to.")
        return data


def _day_bars(rows: list[selectors.UsageRow]) -> dict[str, Any]:
    peak = max((r.minutes for r in rows), default=0.0) or 1.0
    slot = CHART_W / max(len(rows), 1)
    bars = []
    for i, row in enumerate(rows):
        height = round(row.minutes / peak * (CHART_H - 20), 1)
        bars.append(
            {
                "x": round(i * slot + BAR_GAP / 2, 1),
                "y": round(CHART_H - height, 1),
                "width": round(max(slot - BAR_GAP, 1), 1),
                "height": height,
                "day": row.day,
                "minutes": row.minutes,
                "calls": row.calls,
                "label_x": round(i * slot + slot / 2, 1),
                "labelled": i == 0 or (row.day is not None and row.day.day in (1, 8, 15, 22)),
            }
        )
    return {"bars": bars, "width": CHART_W, "height": CHART_H, "peak": peak}


def _agent_bars(rows: list[selectors.UsageRow]) -> dict[str, Any]:
    rows = sorted(rows, key=lambda r: r.minutes, reverse=True)[:10]
    peak = max((r.minutes for r in rows), default=0.0) or 1.0
    bars = [
        {
            "y": i * 28,
            "width": round(r.minutes / peak * 440, 1),
            "name": r.agent_name or "Deleted agent",
            "minutes": r.minutes,
            "calls": r.calls,
        }
        for i, r in enumerate(rows)
    ]
    return {"bars": bars, "height": max(len(bars) * 28, 28)}


def _percent(used: float, limit: int | None) -> int | None:
    if not limit:
        return None
    return min(100, round(used / limit * 100))


def _limits(organization: Organization, summary: dict[str, Any]) -> list[dict[str, Any]]:
    plan: Plan | None = summary["plan"]
    minutes = summary["minutes_used"]

    def limit_of(field: str) -> int | None:
        return getattr(plan, field) if plan is not None else None

    rows = [
        ("Calls in progress now", summary["concurrent_calls"], limit_of("max_concurrent_calls")),
        ("Minutes this period (included)", minutes, limit_of("included_minutes")),
        ("Minutes this period (cap)", minutes, limit_of("max_minutes_per_period")),
        ("Agents", Agent.objects.for_org(organization).count(), limit_of("max_agents")),
        (
            "Phone numbers",
            PhoneNumber.objects.for_org(organization).count(),
            limit_of("max_numbers"),
        ),
    ]
    return [
        {"name": name, "used": used, "limit": limit or None, "percent": _percent(used, limit)}
        for name, used, limit in rows
    ]


def _page(
    request: HttpRequest, form: BillingActionForm, error: str = "", status: int = 200
) -> HttpResponse:
    organization: Organization = request.organization  # type: ignore[attr-defined]
    subscription = subscription_ensure(organization=organization)
    summary = selectors.billing_summary(organization=organization, subscription=subscription)
    start = summary["current_period_start"].date()
    end = min(summary["current_period_end"].date(), timezone.now().date() + timedelta(days=1))
    days = selectors.usage_day_series(organization=organization, start=start, end=end)
    agents = selectors.usage_rows(organization=organization, start=start, end=end, grouping="agent")
    plans = list(Plan.objects.exclude(stripe_price_id="").order_by("included_minutes", "name"))
    context = {
        "summary": summary,
        "subscription": subscription,
        "days": _day_bars(days),
        "total_minutes": sum(d.inbound_seconds + d.outbound_seconds for d in days) / 60,
        "total_calls": sum(d.calls for d in days),
        "agents": _agent_bars(agents),
        "limits": _limits(organization, summary),
        "stripe_enabled": stripe_api.stripe_enabled(),
        "plans": plans,
        "form": form,
        "error": error,
    }
    return render(request, "billing/billing.html", context, status=status)


@org_required(min_role=Role.OWNER, write_role=Role.OWNER)
def billing_page(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _page(request, BillingActionForm())
    form = BillingActionForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    organization: Organization = request.organization  # type: ignore[attr-defined]
    subscription: Subscription | None = subscription_ensure(organization=organization)
    if subscription is None or not stripe_api.stripe_enabled():
        error = "Billing is managed by the operator of this installation."
        return _page(request, form, error, status=400)
    here = request.build_absolute_uri(reverse("billing:billing"))
    try:
        if form.cleaned_data["action"] == "checkout":
            url = stripe_api.stripe_checkout_url(
                organization=organization,
                subscription=subscription,
                plan=form.cleaned_data["plan"],
                success_url=here + "?checkout=done",
                cancel_url=here,
            )
        else:
            url = stripe_api.stripe_portal_url(
                organization=organization, subscription=subscription, return_url=here
            )
    except stripe_api.BillingNotConfigured as exc:
        return _page(request, form, str(exc), status=400)
    except stripe.StripeError as exc:
        logger.warning("billing page: Stripe refused %s: %s", form.cleaned_data["action"], exc)
        error = "Stripe could not be reached or refused the request. Please try again."
        return _page(request, form, error, status=502)
    return HttpResponseRedirect(url)
