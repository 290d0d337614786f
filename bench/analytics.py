"""Analytics at a million turns (issue #10): seed PostgreSQL, time the selectors, EXPLAIN.

    python -m bench.analytics                     # seed once (idempotent), then measure
    python -m bench.analytics --reseed --turns 1000000 --calls 100000
    DATABASE_URL=postgres://... python -m bench.analytics

Seeds a dedicated database (``glassbox_bench_analytics`` on the local server unless
DATABASE_URL says otherwise) with one large organization: ``--calls`` calls spread over
the last 30 days across 5 agents, ``--turns`` assistant turns among them (a realistic
``timeline`` JSON per turn, as the recorder writes it), plus a second, smaller
organization so the scoping filters have something to skip. Rows are generated inside
PostgreSQL (``generate_series``), so seeding a million turns takes about a minute.

Then every analytics selector runs ``--repeat`` times per period (median wall time
printed), and ``EXPLAIN (ANALYZE, BUFFERS)`` of the heaviest queries is written to
``bench/results/analytics.txt``. Numbers and plans are discussed in docs/analytics.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/glassbox_bench_analytics"
BIG_ORG = "bench-analytics-big"
SMALL_ORG = "bench-analytics-small"


def _setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glassbox.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _ensure_database(database_url: str) -> None:
    import psycopg

    base, name = database_url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def _organization(slug: str, agents: int) -> tuple[Any, list[Any], Any]:
    from agents.services import agent_create, credential_create
    from calls.models import PhoneNumber
    from calls.services import phone_number_create
    from tenants.models import Organization
    from tenants.services import organization_create

    org = Organization.objects.filter(slug=slug).first() or organization_create(
        name=slug, slug=slug
    )
    from agents.models import Agent

    existing = list(Agent.objects.for_org(org).order_by("pk"))
    while len(existing) < agents:
        existing.append(
            agent_create(
                organization=org,
                data={
                    "name": f"Agent {len(existing) + 1}",
                    "stt": {"provider": "deepgram"},
                    "llm": {"provider": "openai"},
                    "tts": {"provider": "cartesia"},
                },
            )
        )
    number = PhoneNumber.objects.for_org(org).first()
    if number is None:
        twilio = credential_create(
            organization=org,
            name="twilio",
            provider="twilio",
            account_sid="AC" + "0" * 32,
            auth_token="t" * 32,
        )
        digits = abs(hash(slug)) % 10_000
        number = phone_number_create(
            organization=org,
            data={"number": f"+1415666{digits:04d}", "credential": twilio, "agent": existing[0]},
        )
    return org, existing, number


SEED_CALLS = """
INSERT INTO calls_call (
    organization_id, agent_id, phone_number_id, direction, from_number, to_number, carrier,
    carrier_call_sid, carrier_stream_sid, status, end_reason, end_detail, transferred_to,
    agent_snapshot, stream_nonce, stream_connected_at, started_at, answered_at, ended_at,
    duration_ms, stt_seconds, llm_prompt_tokens, llm_completion_tokens, tts_characters,
    finalized_at)
SELECT %(org)s, (%(agents)s::bigint[])[1 + (g %% array_length(%(agents)s::bigint[], 1))],
       %(number)s, 'inbound', '+15005550006', '+14155550100', 'twilio',
       %(prefix)s || g, '', s.status, s.reason, '', '', '{}'::jsonb, 'n', s.started,
       s.started, s.started + s.duration, s.started + s.duration,
       (extract(epoch FROM s.duration) * 1000)::bigint, 30.0, 900, 120, 640,
       s.started + s.duration
FROM generate_series(1, %(calls)s) AS g,
LATERAL (SELECT
    now() - (random() * interval '30 days') AS started,
    (random() * 300 + 20) * interval '1 second' AS duration,
    CASE WHEN g %% 50 = 0 THEN 'failed' ELSE 'completed' END AS status,
    CASE WHEN g %% 50 = 0 THEN 'provider-error'
         WHEN g %% 7 = 0 THEN 'assistant-hangup'
         ELSE 'caller-hangup' END AS reason
) AS s
"""

# Each call gets turns_per_call turns; the stages are drawn from plausible distributions,
# and the timeline JSON carries the raw marks like the recorder's.
SEED_TURNS = """
INSERT INTO calls_turnmetric (
    organization_id, call_id, call_started_at, agent_id, turn_index, kind, interrupted, timeline,
    voice_to_voice_ms,
    platform_overhead_ms, endpointing_ms, stt_lag_ms, llm_ttft_ms, tts_ttfb_ms)
SELECT c.organization_id, c.id, c.started_at, c.agent_id, t.i, 'reply', t.interrupted,
       jsonb_build_object(
           'turn_index', t.i, 'kind', 'reply',
           'user_speech_start_ms', t.speech_end - 1400,
           'user_speech_end_ms', t.speech_end,
           'stt_final_ms', t.speech_end + t.stt,
           'end_of_turn_ms', t.speech_end + t.ep,
           'llm_request_ms', t.speech_end + t.ep + t.oh / 3,
           'llm_first_token_ms', t.speech_end + t.ep + t.oh / 3 + t.llm,
           'tts_first_text_ms', t.speech_end + t.ep + 2 * t.oh / 3 + t.llm,
           'tts_first_audio_ms', t.speech_end + t.ep + 2 * t.oh / 3 + t.llm + t.tts,
           'first_audio_sent_ms', t.speech_end + t.ep + t.oh + t.llm + t.tts,
           'playback_finished_ms', t.speech_end + t.ep + t.oh + t.llm + t.tts + 2000,
           'interrupted_at_ms', NULL, 'tool_calls', 0),
       t.ep + t.oh + t.llm + t.tts, t.oh, t.ep, t.stt, t.llm, t.tts
FROM calls_call c,
LATERAL (SELECT i, 4000.0 * i AS speech_end,
         150 + random() * 450 AS ep, 40 + random() * 200 AS stt,
         180 + random() * random() * 1500 AS llm, 60 + random() * 300 AS tts,
         2 + random() * random() * 60 AS oh, random() < 0.08 AS interrupted
         FROM generate_series(1, %(per_call)s) AS i) AS t
WHERE c.organization_id = %(org)s
"""


def seed(*, calls: int, turns: int, small_calls: int) -> None:
    from django.db import connection, transaction

    from calls.models import Call, TurnMetric

    for slug, n_calls, n_turns in (
        (BIG_ORG, calls, turns),
        (SMALL_ORG, small_calls, small_calls * 10),
    ):
        org, agents, number = _organization(slug, 5)
        if TurnMetric.objects.for_org(org).count() == n_turns:
            print(f"{slug}: already seeded ({n_turns:,} turns)")
            continue
        t0 = time.perf_counter()
        with transaction.atomic():
            Call.objects.for_org(org).delete()
            with connection.cursor() as cursor:
                cursor.execute(
                    SEED_CALLS,
                    {
                        "org": org.pk,
                        "agents": [a.pk for a in agents],
                        "number": number.pk,
                        "calls": n_calls,
                        "prefix": f"CA{org.pk}x",
                    },
                )
                cursor.execute(SEED_TURNS, {"org": org.pk, "per_call": n_turns // n_calls})
        print(
            f"{slug}: seeded {n_calls:,} calls, {n_turns:,} turns in "
            f"{time.perf_counter() - t0:.1f} s"
        )


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), result


def measure(*, repeat: int) -> list[str]:
    from django.conf import settings
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from calls import analytics
    from tenants.models import Organization

    org = Organization.objects.get(slug=BIG_ORG)
    agent_id = analytics.latency_by_agent(
        organization=org, window=analytics.analytics_window(period="30d")
    )[0].agent_id
    lines = [f"PostgreSQL: {connection.cursor().connection.info.server_version}"]
    with connection.cursor() as cursor:
        # What autovacuum does for an insert-heavy table in production; the visibility map
        # it sets is what lets the covering index answer without reading the table.
        cursor.execute("VACUUM ANALYZE calls_call")
        cursor.execute("VACUUM ANALYZE calls_turnmetric")
        cursor.execute("SELECT count(*) FROM calls_turnmetric")
        lines.append(f"turn rows in the table: {cursor.fetchone()[0]:,}")
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('calls_turnmetric'))")
        lines.append(f"calls_turnmetric with indexes: {cursor.fetchone()[0]}")
    lines.append("")
    lines.append(f"{'selector':<40} {'period':>6} {'rows':>9} {'median ms':>10}")
    plans: list[tuple[str, str]] = []
    for period in ("24h", "7d", "30d"):
        window = analytics.analytics_window(period=period)
        cases: list[tuple[str, Callable[[], Any], Callable[[Any], int]]] = [
            (
                "latency_summary",
                lambda w=window: analytics.latency_summary(organization=org, window=w),
                lambda r: r.turns,
            ),
            (
                "latency_summary(agent)",
                lambda w=window: analytics.latency_summary(
                    organization=org, window=w, agent_id=agent_id
                ),
                lambda r: r.turns,
            ),
            (
                "latency_by_day",
                lambda w=window: analytics.latency_by_day(organization=org, window=w),
                lambda r: sum(d.turns for d in r),
            ),
            (
                "latency_by_agent",
                lambda w=window: analytics.latency_by_agent(organization=org, window=w),
                lambda r: sum(a.turns for a in r),
            ),
            (
                "call_totals",
                lambda w=window: analytics.call_totals(organization=org, window=w),
                lambda r: r.calls,
            ),
            (
                "calls_by_day",
                lambda w=window: analytics.calls_by_day(organization=org, window=w),
                lambda r: sum(d.calls for d in r),
            ),
        ]
        for name, fn, rows in cases:
            fn()  # warm the cache: measure queries, not the first disk read
            ms, result = _timed(fn, repeat)
            lines.append(f"{name:<40} {period:>6} {rows(result):>9,} {ms:>10.1f}")
            if period in ("7d", "30d") and name in ("latency_summary", "latency_by_day"):
                with CaptureQueriesContext(connection) as captured:
                    fn()
                for query in captured.captured_queries:
                    if query["sql"].startswith("SELECT") and "set_config" not in query["sql"]:
                        plans.append((f"{name} {period}", query["sql"]))
    ms, view = _timed(lambda: analytics.overview(organization=org), repeat)
    lines.append(f"{'overview (the dashboard page)':<40} {'':>6} {view.week.calls:>9,} {ms:>10.1f}")
    lines.append("")
    for title, sql in plans:
        # As the selectors run them: with the analytics work_mem, in a transaction.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('work_mem', %s, true)", [settings.ANALYTICS_WORK_MEM])
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            lines.append(f"== {title}: {sql[:160]}...")
            lines += [row[0] for row in cursor.fetchall()]
            lines.append("")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--turns", type=int, default=1_000_000)
    parser.add_argument("--small-calls", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reseed", action="store_true", help="drop and seed again")
    parser.add_argument("--name", default="analytics")
    args = parser.parse_args(argv)
    database_url = os.environ.get("DATABASE_URL", DEFAULT_DB)
    if not database_url.startswith("postgres"):
        parser.error("this bench needs PostgreSQL (DATABASE_URL=postgres://...)")
    _ensure_database(database_url)
    _setup_django(database_url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if args.reseed:
        from calls.models import Call
        from tenants.models import Organization

        for org in Organization.objects.filter(slug__in=[BIG_ORG, SMALL_ORG]):
            Call.objects.for_org(org).delete()
    seed(calls=args.calls, turns=args.turns, small_calls=args.small_calls)
    lines = measure(repeat=args.repeat)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{args.name}.txt"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[: lines.index("", 4) + 1] if "" in lines[4:] else lines))
    print(f"\nfull output with plans: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
