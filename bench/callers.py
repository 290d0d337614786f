"""Caller processes for the load bench: each runs its share of simulated Twilio callers on
its own event loop and returns their summaries (JSON-ready dicts).

One process drives ~25 callers cleanly (the caller's own ``late_frames`` says when it
does not), so :func:`run_callers` splits N callers over several processes.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from voice.carriers.twilio_caller import (
    CallerConfig,
    Pause,
    Say,
    Step,
    Until,
    WaitForBot,
    place_call,
)

PER_PROCESS = 20


@dataclass(frozen=True, slots=True)
class Plan:
    base_url: str
    account_sid: str
    auth_token: str
    to_number: str
    turns: int = 3
    barge_in: bool = True
    utterance_ms: int = 1000
    barge_in_after_ms: int = 600
    quiet_ms: int = 300
    pause_ms: int = 200
    ramp_s: float = 2.0  # spread call starts uniformly over this window
    max_call_s: float = 120.0
    cpus: tuple[int, ...] = ()  # pin caller processes here (empty: no pinning)
    # Burst mode (> 0): every call starts its turn i at the same wall-clock moment,
    # ``burst_first_s`` after the synchronized start plus ``i`` periods, so all of them end
    # together and every call's turn starts at once on the server. No barge-in.
    burst_period_s: float = 0.0
    burst_first_s: float = 0.0


def burst_slots(plan: Plan, start_at: float) -> list[float]:
    """Wall-clock times at which the burst-mode callers start speaking each turn."""
    first = start_at + plan.burst_first_s
    return [first + i * plan.burst_period_s for i in range(plan.turns)]


def script(plan: Plan, start_at: float = 0.0) -> list[Step]:
    """Greeting, ``turns`` question/answer turns, then one barge-in over the last reply
    (burst mode: the turns at the shared slots, no barge-in)."""
    wait = WaitForBot(quiet_ms=plan.quiet_ms, timeout_s=20.0)
    steps: list[Step] = [wait]
    if plan.burst_period_s > 0:
        for i, at in enumerate(burst_slots(plan, start_at)):
            steps += [Until(at), Say(tone_ms=plan.utterance_ms, label=f"turn-{i}"), wait]
        return steps
    for i in range(plan.turns):
        steps += [Say(tone_ms=plan.utterance_ms, label=f"turn-{i}"), wait, Pause(plan.pause_ms)]
    if plan.barge_in and plan.turns:
        # Talk over the reply to the last turn instead of waiting for it to finish.
        steps[-2:] = [
            Say(
                tone_ms=plan.utterance_ms,
                label="barge-in",
                barge_in_after_ms=plan.barge_in_after_ms,
                wait_for_bot_s=20.0,
            ),
            wait,
        ]
    return steps


async def _drive(plan: Plan, count: int, start_at: float, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    steps = script(plan, start_at)
    config = CallerConfig(
        public_base_url=plan.base_url,
        account_sid=plan.account_sid,
        auth_token=plan.auth_token,
        from_number="+14155550199",
        to_number=plan.to_number,
        max_call_s=plan.max_call_s,
        http_timeout_s=30.0,
        connect_timeout_s=30.0,
    )

    async def one(http: httpx.AsyncClient) -> dict[str, Any]:
        delay = start_at + rng.uniform(0, plan.ramp_s) - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        began = time.time()
        result = await place_call(config, steps, http=http)
        summary = result.summary()
        summary["began_at"] = began
        summary["ended_at"] = time.time()
        return summary

    limits = httpx.Limits(max_connections=count + 5, max_keepalive_connections=count + 5)
    async with httpx.AsyncClient(timeout=30.0, verify=False, limits=limits) as http:
        return list(await asyncio.gather(*(one(http) for _ in range(count))))


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's when installed: the load generator should not be what saturates."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _worker(args: tuple[Plan, int, float, int]) -> list[dict[str, Any]]:
    plan, count, start_at, seed = args
    if plan.cpus:
        os.sched_setaffinity(0, plan.cpus)
    nice = int(os.environ.get("BENCH_NICE", "0") or 0)
    if nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)  # see bench.stack.niced
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(_drive(plan, count, start_at, seed))


def run_callers(
    plan: Plan, n: int, *, lead_s: float = 1.5, start_at: float | None = None
) -> list[dict[str, Any]]:
    """N concurrent callers over ceil(N / PER_PROCESS) processes; starts are synchronized
    to ``lead_s`` from now (process start-up happens before it), or to ``start_at``
    (``time.time()`` seconds)."""
    procs = max(1, math.ceil(n / PER_PROCESS))
    shares = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    if start_at is None:
        start_at = time.time() + lead_s
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(procs) as pool:
        parts = pool.map(_worker, [(plan, k, start_at, i) for i, k in enumerate(shares)])
    return [summary for part in parts for summary in part]
