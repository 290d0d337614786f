"""Analytics selectors: the database's percentiles match the definition on every backend.

The suite runs on SQLite (window functions) and, in CI, on PostgreSQL (percentile_cont):
each test compares against a Python reference of PostgreSQL's definition, so both paths
are held to the same numbers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import pytest

from calls import analytics
from calls.analytics import Window
from calls.models import CallStatus, TurnMetric
from tests.conftest import Tenant
from tests.factories import make_call, make_finished_call, make_turn_metric, turn_timeline
from voice.events import EndReason

NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
WEEK = analytics.analytics_window(period="7d", now=NOW)


def reference(values: Iterable[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont, in Python."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * fraction
    low = math.floor(rank)
    high = low + (1 if rank > low else 0)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _turn_values(tenant: Tenant, stage: str) -> list[float]:
    return list(
        TurnMetric.objects.for_org(tenant.organization)
        .filter(**{f"{stage}__isnull": False})
        .values_list(stage, flat=True)
    )


def test_percentiles_match_percentile_cont_for_every_stage(tenant_a: Tenant) -> None:
    rng = random.Random(7)
    for c in range(9):
        make_finished_call(
            tenant_a.organization,
            started_at=NOW - timedelta(hours=3 + 7 * c),
            turns=[
                turn_timeline(
                    i,
                    speech_end_ms=4000.0 * i,
                    endpointing_ms=rng.uniform(150, 700),
                    stt_lag_ms=rng.uniform(40, 300),
                    llm_ttft_ms=rng.uniform(180, 1500),
                    tts_ttfb_ms=rng.uniform(60, 400),
                    overhead_ms=rng.uniform(2, 40),
                )
                for i in range(1, 2 + c % 4)
            ],
        )

    summary = analytics.latency_summary(organization=tenant_a.organization, window=WEEK)

    assert summary.turns == TurnMetric.objects.for_org(tenant_a.organization).count() > 10
    for stage in analytics.STAGES:
        values = _turn_values(tenant_a, stage)
        stats = summary.stages[stage]
        assert stats.count == len(values)
        assert stats.p50 == pytest.approx(reference(values, 0.5), abs=1e-3), stage
        assert stats.p95 == pytest.approx(reference(values, 0.95), abs=1e-3), stage


@pytest.mark.parametrize(
    ("values", "p50", "p95"),
    [
        ([500.0], 500.0, 500.0),
        ([100.0, 200.0], 150.0, 195.0),
        ([300.0, 100.0, 200.0, 400.0], 250.0, 385.0),
        ([10.0, 10.0, 10.0, 1000.0], 10.0, 851.5),
    ],
)
def test_interpolation_between_ranks(
    tenant_a: Tenant, values: list[float], p50: float, p95: float
) -> None:
    call = make_call(tenant_a.organization, started_at=NOW - timedelta(hours=1))
    for i, value in enumerate(values):
        make_turn_metric(tenant_a.organization, call=call, turn_index=i, voice_to_voice_ms=value)

    stats = analytics.latency_summary(organization=tenant_a.organization, window=WEEK).stages[
        "voice_to_voice_ms"
    ]

    assert (stats.p50, stats.p95, stats.count) == (p50, p95, len(values))


def test_missing_stages_are_ignored_not_zero(tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization, started_at=NOW - timedelta(hours=1))
    make_turn_metric(tenant_a.organization, call=call, turn_index=0, voice_to_voice_ms=None)
    make_turn_metric(tenant_a.organization, call=call, turn_index=1, voice_to_voice_ms=700.0)

    summary = analytics.latency_summary(organization=tenant_a.organization, window=WEEK)

    assert summary.turns == 2
    assert summary.stages["voice_to_voice_ms"] == analytics.StageStats(700.0, 700.0, 1)
    assert summary.stages["llm_ttft_ms"] == analytics.StageStats(None, None, 0)


def test_empty_window_has_no_numbers(tenant_a: Tenant) -> None:
    summary = analytics.latency_summary(organization=tenant_a.organization, window=WEEK)
    assert summary.turns == 0
    assert all(s == analytics.NO_STATS for s in summary.stages.values())


def test_window_agent_and_tenant_filters(tenant_a: Tenant, tenant_b: Tenant) -> None:
    org = tenant_a.organization
    inside = make_finished_call(
        org, started_at=NOW - timedelta(days=2), turns=[turn_timeline(1, speech_end_ms=1000)]
    )
    other_agent = make_finished_call(
        org,
        started_at=NOW - timedelta(days=1),
        turns=[turn_timeline(1, speech_end_ms=1000, llm_ttft_ms=900.0)],
    )
    make_finished_call(  # too old
        org, started_at=NOW - timedelta(days=8), turns=[turn_timeline(1, speech_end_ms=1000)]
    )
    make_finished_call(  # another tenant's
        tenant_b.organization,
        started_at=NOW - timedelta(days=1),
        turns=[turn_timeline(1, speech_end_ms=1000)],
    )

    everything = analytics.latency_summary(organization=org, window=WEEK)
    one_agent = analytics.latency_summary(organization=org, window=WEEK, agent_id=inside.agent_id)

    assert everything.turns == 2
    assert everything.stages["llm_ttft_ms"].p95 == pytest.approx(310 + (900 - 310) * 0.95)
    assert one_agent.turns == 1
    assert one_agent.stages["llm_ttft_ms"] == analytics.StageStats(310.0, 310.0, 1)
    assert other_agent.agent_id != inside.agent_id


def test_latency_by_agent_and_by_day(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    a = make_finished_call(
        org,
        started_at=NOW - timedelta(days=1, hours=1),
        turns=[turn_timeline(i, speech_end_ms=3000.0 * i) for i in range(1, 4)],
    )
    b = make_finished_call(
        org,
        started_at=NOW - timedelta(days=3),
        turns=[turn_timeline(1, speech_end_ms=1000, llm_ttft_ms=1310.0)],
    )

    by_agent = analytics.latency_by_agent(organization=org, window=WEEK)
    by_day = analytics.latency_by_day(organization=org, window=WEEK)

    assert [(r.agent_id, r.turns) for r in by_agent] == [(a.agent_id, 3), (b.agent_id, 1)]
    assert by_agent[0].agent_name == a.agent.name
    v2v_a = 240 + 310 + 120 + 12.0
    assert by_agent[0].voice_to_voice.p50 == pytest.approx(v2v_a)
    assert by_agent[1].voice_to_voice.p50 == pytest.approx(v2v_a + 1000)
    assert [d.day for d in by_day] == [date(2026, 3, 3) + timedelta(days=i) for i in range(8)]
    turns_by_day = {d.day: d.turns for d in by_day}
    assert turns_by_day[date(2026, 3, 9)] == 3
    assert turns_by_day[date(2026, 3, 7)] == 1
    assert sum(turns_by_day.values()) == 4
    empty = next(d for d in by_day if d.day == date(2026, 3, 8))
    assert empty.voice_to_voice == analytics.NO_STATS


def test_call_totals_minutes_end_reasons_and_interruptions(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    make_finished_call(
        org,
        started_at=NOW - timedelta(days=1),
        duration_s=90,
        turns=[
            turn_timeline(1, speech_end_ms=1000, interrupted_after_ms=400),
            turn_timeline(2, speech_end_ms=5000),
        ],
    )
    make_finished_call(
        org,
        started_at=NOW - timedelta(days=2),
        duration_s=30,
        reason=EndReason.PROVIDER_ERROR,
        detail="deepgram: 401",
        turns=[turn_timeline(1, speech_end_ms=1000, interrupted_after_ms=100)],
    )
    make_finished_call(org, started_at=NOW - timedelta(days=2), duration_s=60)
    make_call(org, started_at=NOW - timedelta(minutes=1))  # still ringing: no minutes yet

    totals = analytics.call_totals(organization=org, window=WEEK)
    by_day = analytics.calls_by_day(organization=org, window=WEEK)

    assert (totals.calls, totals.minutes, totals.completed, totals.failed) == (4, 3.0, 2, 1)
    assert (totals.turns, totals.interruptions, totals.interruptions_per_call) == (3, 2, 0.5)
    assert [(r.reason, r.count) for r in totals.end_reasons] == [
        ("caller-hangup", 2),
        ("provider-error", 1),
    ]
    per_day = {d.day: (d.calls, d.minutes) for d in by_day}
    assert per_day[date(2026, 3, 8)] == (2, 1.5)
    assert per_day[date(2026, 3, 9)] == (1, 1.5)
    assert per_day[date(2026, 3, 10)] == (1, 0.0)


def test_overview(tenant_a: Tenant, tenant_b: Tenant) -> None:
    org = tenant_a.organization
    make_finished_call(
        org, started_at=NOW - timedelta(hours=2), turns=[turn_timeline(1, speech_end_ms=900)]
    )
    failed = make_finished_call(
        org,
        started_at=NOW - timedelta(days=3),
        reason=EndReason.ERROR,
        detail="setup: boom",
    )
    live = make_call(org, started_at=NOW - timedelta(minutes=2), status=CallStatus.IN_PROGRESS)
    make_call(tenant_b.organization, started_at=NOW - timedelta(minutes=1))

    view = analytics.overview(organization=org, now=NOW)

    assert (view.today.calls, view.week.calls) == (2, 3)
    assert view.today.minutes == 1.0
    assert view.latency_week.p50 == pytest.approx(682.0)
    assert [c.pk for c in view.in_progress] == [live.pk]
    assert [c.pk for c in view.recent_failures] == [failed.pk]


def test_windows() -> None:
    assert analytics.analytics_window(period="24h", now=NOW) == Window(
        start=NOW - timedelta(hours=24), end=NOW, period="24h"
    )
    today = analytics.today_window(now=NOW)
    assert today.start == datetime(2026, 3, 10, tzinfo=UTC) and today.days() == [date(2026, 3, 10)]
    with pytest.raises(ValueError, match="Unknown period"):
        analytics.analytics_window(period="2w", now=NOW)
