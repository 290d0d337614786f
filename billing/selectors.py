from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import Count, Sum
from django.utils import timezone

from billing.models import CallUsage, Plan, Subscription
from tenants.models import Organization

GROUPINGS = ("day", "agent", "agent_day", "direction")


def plan_default() -> Plan | None:
    return Plan.objects.filter(is_default=True).first()


def plan_list() -> list[Plan]:
    return list(Plan.objects.all())


def subscription_for(*, organization: Organization) -> Subscription | None:
    return Subscription.objects.for_org(organization).select_related("plan").first()


def plan_for(*, organization_id: int) -> Plan | None:
    """The plan that applies to an organization: its subscription's, else the default."""
    subscription = (
        Subscription.objects.dangerously_unscoped()
        .select_related("plan")
        .filter(organization_id=organization_id)
        .first()
    )
    return subscription.plan if subscription is not None else plan_default()


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) around ``now``: the self-hosted billing period."""
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def usage_seconds(*, organization: Organization, start: date, end: date) -> int:
    """Billable seconds of calls finalized on days in [start, end)."""
    total = (
        CallUsage.objects.for_org(organization)
        .filter(day__gte=start, day__lt=end)
        .aggregate(s=Sum("seconds"))["s"]
    )
    return int(total or 0)


_SUMS = {
    "calls": Count("id"),
    "seconds": Sum("seconds"),
    "stt_seconds": Sum("stt_seconds"),
    "llm_prompt_tokens": Sum("llm_prompt_tokens"),
    "llm_completion_tokens": Sum("llm_completion_tokens"),
    "tts_characters": Sum("tts_characters"),
    "analysis_prompt_tokens": Sum("analysis_prompt_tokens"),
    "analysis_completion_tokens": Sum("analysis_completion_tokens"),
}


@dataclass(frozen=True, slots=True)
class UsageRow:
    day: date | None
    agent_id: int | None
    agent_name: str
    direction: str
    calls: int
    inbound_seconds: int
    outbound_seconds: int
    stt_seconds: float
    llm_prompt_tokens: int
    llm_completion_tokens: int
    tts_characters: int
    analysis_prompt_tokens: int = 0
    analysis_completion_tokens: int = 0

    @property
    def minutes(self) -> float:
        return round((self.inbound_seconds + self.outbound_seconds) / 60, 2)


def usage_rows(
    *, organization: Organization, start: date, end: date, grouping: str
) -> list[UsageRow]:
    """Usage in [start, end) per day, agent, agent and day, or direction."""
    assert grouping in GROUPINGS, grouping
    keys: list[str] = {
        "day": ["day"],
        "agent": ["agent_id", "agent__name"],
        "agent_day": ["day", "agent_id", "agent__name"],
        "direction": [],
    }[grouping]
    # Direction is always a key too: minutes are reported per direction.
    rows = (
        CallUsage.objects.for_org(organization)
        .filter(day__gte=start, day__lt=end)
        .values(*keys, "direction")
        .annotate(**_SUMS)
        .order_by(*keys, "direction")
    )
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        group = tuple(row.get(k) for k in keys) if grouping != "direction" else (row["direction"],)
        acc = merged.setdefault(
            group,
            {
                "day": row.get("day"),
                "agent_id": row.get("agent_id"),
                "agent_name": row.get("agent__name") or "",
                "direction": row["direction"] if grouping == "direction" else "",
                "calls": 0,
                "inbound_seconds": 0,
                "outbound_seconds": 0,
                "stt_seconds": 0.0,
                "llm_prompt_tokens": 0,
                "llm_completion_tokens": 0,
                "tts_characters": 0,
                "analysis_prompt_tokens": 0,
                "analysis_completion_tokens": 0,
            },
        )
        acc["calls"] += row["calls"]
        acc[f"{row['direction']}_seconds"] += int(row["seconds"] or 0)
        acc["stt_seconds"] += float(row["stt_seconds"] or 0.0)
        for field in (
            "llm_prompt_tokens",
            "llm_completion_tokens",
            "tts_characters",
            "analysis_prompt_tokens",
            "analysis_completion_tokens",
        ):
            acc[field] += int(row[field] or 0)
    return [UsageRow(**acc) for acc in merged.values()]


def usage_day_series(*, organization: Organization, start: date, end: date) -> list[UsageRow]:
    """One row per day of [start, end), zeros included (a chart needs every day)."""
    by_day = {
        row.day: row
        for row in usage_rows(organization=organization, start=start, end=end, grouping="day")
    }
    series = []
    day = start
    while day < end:
        series.append(by_day.get(day) or UsageRow(day, None, "", "", 0, 0, 0, 0.0, 0, 0, 0))
        day += timedelta(days=1)
    return series


def today() -> date:
    return timezone.now().date()


def billing_summary(
    *, organization: Organization, subscription: Subscription | None
) -> dict[str, Any]:
    """Plan, period, status and how close the organization is to its limits."""
    from billing.leases import lease_count

    if subscription is not None:
        period_start = subscription.current_period_start
        period_end = subscription.current_period_end
    else:
        period_start, period_end = month_bounds(timezone.now())
    seconds = usage_seconds(
        organization=organization, start=period_start.date(), end=period_end.date()
    )
    return {
        "id": subscription.pk if subscription else None,
        "plan": subscription.plan if subscription else None,
        "status": subscription.status if subscription else "unlimited",
        "current_period_start": period_start,
        "current_period_end": period_end,
        "grace_until": subscription.grace_until if subscription else None,
        "minutes_used": round(seconds / 60, 2),
        "concurrent_calls": lease_count(organization=organization),
        "stripe_managed": bool(subscription and subscription.stripe_subscription_id),
    }
