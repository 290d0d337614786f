"""Analytics selectors: latency percentiles, call volumes, end reasons.

Everything is aggregated by the database. Percentiles are *continuous* percentiles (linear
interpolation between the two nearest ranks, PostgreSQL's ``percentile_cont``):

- on PostgreSQL, one grouped query with ``percentile_cont(f) WITHIN GROUP (ORDER BY col)``
  per stage and fraction (PostgreSQL sorts each column once and shares the sort between
  the fractions);
- on SQLite (the embedded default), which has no ordered-set aggregates, the same numbers
  from window functions: ``ROW_NUMBER()`` and ``COUNT(*)`` over each group pick the two
  ranks around ``(n - 1) * f``, and the interpolation is the same formula as PostgreSQL's.

Both paths take the same scoped, filtered queryset, so tenant scoping and filters are
written once. The numbers and the query plans at a million turns are in docs/analytics.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import (
    Aggregate,
    Count,
    F,
    FloatField,
    Q,
    QuerySet,
    Sum,
    Value,
)
from django.db.models.functions import TruncDate
from django.utils import timezone

from agents.models import Agent
from calls.models import TERMINAL_STATUSES, TURN_STAGES, Call, CallStatus, TurnMetric
from tenants.models import Organization

# The stages in the order the waterfall and the analytics page show them; voice-to-voice
# (the sum the caller hears) last.
STAGES: tuple[str, ...] = (
    "endpointing_ms",
    "stt_lag_ms",
    "llm_ttft_ms",
    "tts_ttfb_ms",
    "platform_overhead_ms",
    "voice_to_voice_ms",
)
assert set(STAGES) == set(TURN_STAGES)

FRACTIONS: tuple[float, ...] = (0.5, 0.95)

# Periods the API and the pages accept, newest data last.
PERIODS: dict[str, timedelta] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}
DEFAULT_PERIOD = "7d"

# End reasons that mean something went wrong (the overview's "recent failures").
FAILURE_REASONS = ("provider-error", "error", "lost", "no-stream", "failed")


class PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``."""

    function = "percentile_cont"
    name = "PercentileCont"
    output_field = FloatField()
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: Any, *, fraction: float, **extra: Any) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must be within [0, 1]")
        # A literal, not a parameter: it is a float we produced, and PostgreSQL must see
        # the same text in every aggregate over one column to share the sort between them.
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time range [start, end)."""

    start: datetime
    end: datetime
    period: str = ""

    def days(self) -> list[date]:
        first, last = self.start.date(), (self.end - timedelta(microseconds=1)).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def analytics_window(*, period: str, now: datetime | None = None) -> Window:
    """The window ending now that a period name (``24h``, ``7d``, ...) covers."""
    if period not in PERIODS:
        raise ValueError(f"Unknown period {period!r}; use one of {', '.join(PERIODS)}.")
    now = now or timezone.now()
    return Window(start=now - PERIODS[period], end=now, period=period)


def today_window(*, now: datetime | None = None) -> Window:
    now = now or timezone.now()
    midnight = timezone.make_aware(datetime.combine(timezone.localdate(now), time.min))
    return Window(start=midnight, end=now, period="today")


@dataclass(frozen=True, slots=True)
class StageStats:
    p50: float | None
    p95: float | None
    count: int


NO_STATS = StageStats(p50=None, p95=None, count=0)


@dataclass(frozen=True, slots=True)
class LatencySummary:
    turns: int
    stages: dict[str, StageStats]


@dataclass(frozen=True, slots=True)
class AgentLatency:
    agent_id: int | None
    agent_name: str
    turns: int
    voice_to_voice: StageStats


@dataclass(frozen=True, slots=True)
class DayLatency:
    day: date
    turns: int
    voice_to_voice: StageStats


@dataclass(frozen=True, slots=True)
class ReasonCount:
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class DayCalls:
    day: date
    calls: int
    minutes: float


@dataclass(slots=True)
class CallTotals:
    calls: int
    minutes: float
    completed: int
    failed: int
    turns: int
    interruptions: int
    end_reasons: list[ReasonCount] = field(default_factory=list)

    @property
    def interruptions_per_call(self) -> float | None:
        return round(self.interruptions / self.calls, 3) if self.calls else None


# -- building blocks -------------------------------------------------------------------


def _calls(*, organization: Organization, window: Window, agent_id: int | None) -> QuerySet[Call]:
    calls = Call.objects.for_org(organization).filter(
        started_at__gte=window.start, started_at__lt=window.end
    )
    if agent_id is not None:
        calls = calls.filter(agent_id=agent_id)
    return calls.order_by()


def _turns(
    *, organization: Organization, window: Window, agent_id: int | None
) -> QuerySet[TurnMetric]:
    # A turn belongs to the period its call started in: a call's turns are never split
    # across two periods. The call's start and agent are copied onto the turn, so this
    # reads the turns' covering index alone, never the calls.
    turns = TurnMetric.objects.for_org(organization).filter(
        call_started_at__gte=window.start, call_started_at__lt=window.end
    )
    if agent_id is not None:
        turns = turns.filter(agent_id=agent_id)
    # Model ordering would leak into GROUP BY.
    return turns.order_by()


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


@dataclass(frozen=True, slots=True)
class GroupPercentiles:
    rows: int
    # column -> ({fraction: value or None}, non-null count)
    columns: dict[str, tuple[dict[float, float | None], int]]

    def stats(self, column: str) -> StageStats:
        values, count = self.columns[column]
        return StageStats(p50=_round(values.get(0.5)), p95=_round(values.get(0.95)), count=count)


def percentiles(
    queryset: QuerySet[Any],
    *,
    columns: Sequence[str],
    group: Any = None,
    fractions: Sequence[float] = FRACTIONS,
) -> dict[Any, GroupPercentiles]:
    """Percentiles of ``columns`` per group, computed by the database.

    ``group`` is an expression, or None for a single group keyed ``None``. Groups without
    rows are absent; a column without non-null values in a group has count 0 and None
    values. NULLs are ignored, as ``percentile_cont`` ignores them.
    """
    if connections[queryset.db].vendor == "postgresql":
        return _percentiles_postgresql(queryset, columns=columns, group=group, fractions=fractions)
    return _percentiles_window(queryset, columns=columns, group=group, fractions=fractions)


def _percentiles_postgresql(
    queryset: QuerySet[Any], *, columns: Sequence[str], group: Any, fractions: Sequence[float]
) -> dict[Any, GroupPercentiles]:
    # COUNT(*), not COUNT(id): the id is not in the covering index, and naming it would
    # make PostgreSQL read the table instead of the index alone.
    aggregates: dict[str, Any] = {"rows": Count("*")}
    for i, column in enumerate(columns):
        aggregates[f"n{i}"] = Count(column)
        for j, fraction in enumerate(fractions):
            aggregates[f"p{i}_{j}"] = PercentileCont(column, fraction=fraction)
    with transaction.atomic(using=queryset.db), connections[queryset.db].cursor() as cursor:
        # Each percentile sorts its column; the default work_mem (4 MB) sends a sort of a
        # few hundred thousand turns to disk. Only for this transaction.
        cursor.execute("SELECT set_config('work_mem', %s, true)", [settings.ANALYTICS_WORK_MEM])
        if group is None:
            result = queryset.aggregate(**aggregates)
            rows = [{"g": None, **result}] if result["rows"] else []
        else:
            rows = list(queryset.annotate(g=group).values("g").annotate(**aggregates).order_by())
    return {
        row["g"]: GroupPercentiles(
            rows=row["rows"],
            columns={
                column: (
                    {fraction: row[f"p{i}_{j}"] for j, fraction in enumerate(fractions)},
                    row[f"n{i}"],
                )
                for i, column in enumerate(columns)
            },
        )
        for row in rows
    }


def _percentiles_window(
    queryset: QuerySet[Any], *, columns: Sequence[str], group: Any, fractions: Sequence[float]
) -> dict[Any, GroupPercentiles]:
    grouped = queryset.annotate(g=group if group is not None else Value(0))
    totals = {
        _group_value(row["g"], group): row["n"]
        for row in grouped.values("g").annotate(n=Count("*")).order_by()
    }
    empty = (dict.fromkeys(fractions), 0)
    out = {
        key: GroupPercentiles(rows=n, columns=dict.fromkeys(columns, empty))
        for key, n in totals.items()
    }
    for column in columns:
        base = (
            grouped.filter(**{f"{column}__isnull": False})
            .annotate(v=F(column))
            .values("g", "v")
            .order_by()
        )
        inner_sql, params = base.query.sql_with_params()
        picks = []
        for fraction in fractions:
            rank = f"((n - 1) * {float(fraction)!r})"
            low = f"CAST({rank} AS INTEGER)"
            high = f"({low} + ({rank} > {low}))"
            picks.append(
                f"MAX(CASE WHEN rn = {low} THEN v END), "
                f"MAX(CASE WHEN rn = {high} THEN v END), "
                f"MAX({rank} - {low})"
            )
        sql = (
            "WITH base(g, v) AS (" + inner_sql + "), ranked AS (SELECT g, v, "
            "ROW_NUMBER() OVER (PARTITION BY g ORDER BY v) - 1 AS rn, "
            "COUNT(*) OVER (PARTITION BY g) AS n FROM base) "
            "SELECT g, MAX(n), " + ", ".join(picks) + " FROM ranked GROUP BY g"
        )
        with connections[queryset.db].cursor() as cursor:
            cursor.execute(sql, params)
            fetched = cursor.fetchall()
        for row in fetched:
            values: dict[float, float | None] = {}
            for j, fraction in enumerate(fractions):
                low_v, high_v, weight = row[2 + 3 * j : 5 + 3 * j]
                # PostgreSQL's float8 interpolation: low + (high - low) * weight.
                values[fraction] = low_v + (high_v - low_v) * weight
            out[_group_value(row[0], group)].columns[column] = (values, row[1])
    return out


def _group_value(raw: Any, group: Any) -> Any:
    if group is None:
        return None
    # A raw cursor returns SQLite's text for dates, where the ORM would convert them.
    if isinstance(group, TruncDate) and isinstance(raw, str):
        return date.fromisoformat(raw)
    return raw


# -- selectors -------------------------------------------------------------------------


def latency_summary(
    *,
    organization: Organization,
    window: Window,
    agent_id: int | None = None,
    stages: Sequence[str] = STAGES,
) -> LatencySummary:
    """p50/p95 of each stage (all of them unless ``stages`` narrows it; each one is a
    sort of the window's turns) over the window's turns."""
    turns = _turns(organization=organization, window=window, agent_id=agent_id)
    result = percentiles(turns, columns=stages).get(None)
    if result is None:
        return LatencySummary(turns=0, stages=dict.fromkeys(stages, NO_STATS))
    return LatencySummary(
        turns=result.rows, stages={stage: result.stats(stage) for stage in stages}
    )


def latency_by_agent(*, organization: Organization, window: Window) -> list[AgentLatency]:
    """Voice-to-voice p50/p95 per agent (the agent each call ran with), busiest first."""
    turns = _turns(organization=organization, window=window, agent_id=None)
    result = percentiles(turns, columns=("voice_to_voice_ms",), group=F("agent_id"))
    names = dict(
        Agent.objects.for_org(organization)
        .filter(pk__in=[k for k in result if k is not None])
        .values_list("pk", "name")
    )
    rows = [
        AgentLatency(
            agent_id=agent_id,
            agent_name=names.get(agent_id, "") if agent_id is not None else "",
            turns=group.rows,
            voice_to_voice=group.stats("voice_to_voice_ms"),
        )
        for agent_id, group in result.items()
    ]
    return sorted(rows, key=lambda r: (-r.turns, r.agent_name))


def latency_by_day(
    *, organization: Organization, window: Window, agent_id: int | None = None
) -> list[DayLatency]:
    """Voice-to-voice p50/p95 per day of the window (days without turns included)."""
    turns = _turns(organization=organization, window=window, agent_id=agent_id)
    result = percentiles(turns, columns=("voice_to_voice_ms",), group=TruncDate("call_started_at"))
    return [
        DayLatency(
            day=d,
            turns=result[d].rows if d in result else 0,
            voice_to_voice=result[d].stats("voice_to_voice_ms") if d in result else NO_STATS,
        )
        for d in window.days()
    ]


def call_totals(
    *, organization: Organization, window: Window, agent_id: int | None = None
) -> CallTotals:
    """Calls, minutes, outcomes, end reasons and interruptions over the window."""
    calls = _calls(organization=organization, window=window, agent_id=agent_id)
    agg = calls.aggregate(
        calls=Count("id"),
        duration_ms=Sum("duration_ms"),
        completed=Count("id", filter=Q(status=CallStatus.COMPLETED)),
        failed=Count("id", filter=Q(status=CallStatus.FAILED)),
    )
    turns = _turns(organization=organization, window=window, agent_id=agent_id).aggregate(
        turns=Count("*"), interruptions=Count("interrupted", filter=Q(interrupted=True))
    )
    reasons = (
        calls.exclude(end_reason="")
        .values("end_reason")
        .annotate(n=Count("id"))
        .order_by("-n", "end_reason")
    )
    return CallTotals(
        calls=agg["calls"],
        minutes=_minutes(agg["duration_ms"]),
        completed=agg["completed"],
        failed=agg["failed"],
        turns=turns["turns"],
        interruptions=turns["interruptions"],
        end_reasons=[ReasonCount(reason=r["end_reason"], count=r["n"]) for r in reasons],
    )


def calls_by_day(
    *, organization: Organization, window: Window, agent_id: int | None = None
) -> list[DayCalls]:
    calls = _calls(organization=organization, window=window, agent_id=agent_id)
    rows = {
        r["day"]: r
        for r in calls.annotate(day=TruncDate("started_at"))
        .values("day")
        .annotate(n=Count("id"), ms=Sum("duration_ms"))
    }
    return [
        DayCalls(
            day=d,
            calls=rows[d]["n"] if d in rows else 0,
            minutes=_minutes(rows[d]["ms"]) if d in rows else 0.0,
        )
        for d in window.days()
    ]


def _minutes(duration_ms: int | None) -> float:
    return round((duration_ms or 0) / 60_000, 2)


# -- overview --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Overview:
    today: CallTotals
    week: CallTotals
    latency_today: StageStats
    latency_week: StageStats
    in_progress: list[Call]
    recent_failures: list[Call]


def calls_in_progress(*, organization: Organization, limit: int = 50) -> list[Call]:
    return list(
        Call.objects.for_org(organization)
        .exclude(status__in=TERMINAL_STATUSES)
        .select_related("agent", "phone_number")
        .order_by("-started_at", "-id")[:limit]
    )


def calls_recent_failures(*, organization: Organization, limit: int = 10) -> list[Call]:
    return list(
        Call.objects.for_org(organization)
        .filter(Q(status=CallStatus.FAILED) | Q(end_reason__in=FAILURE_REASONS))
        .select_related("agent")
        .order_by("-started_at", "-id")[:limit]
    )


def overview(*, organization: Organization, now: datetime | None = None) -> Overview:
    now = now or timezone.now()
    today = today_window(now=now)
    week = analytics_window(period="7d", now=now)

    def v2v(window: Window) -> StageStats:
        summary = latency_summary(
            organization=organization, window=window, stages=("voice_to_voice_ms",)
        )
        return summary.stages["voice_to_voice_ms"]

    return Overview(
        today=call_totals(organization=organization, window=today),
        week=call_totals(organization=organization, window=week),
        latency_today=v2v(today),
        latency_week=v2v(week),
        in_progress=calls_in_progress(organization=organization),
        recent_failures=calls_recent_failures(organization=organization),
    )
